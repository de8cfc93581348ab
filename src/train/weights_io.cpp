#include "train/weights_io.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace dsv2 {

void load_train_weights(TrainWeights& tw, const std::string& dir) {
  const Checkpoint checkpoint(dir);
  Weights loaded = load_weights(tw.config(), checkpoint);  // validates names, shapes and dtypes
  std::vector<const ParameterInfo*> held;  // per for_each_tensor entry
  for (const auto& info : tw.infos()) {
    if (held.size() <= static_cast<size_t>(info.slot)) held.resize(info.slot + 1, nullptr);
    held[info.slot] = &info;
  }
  size_t i = 0;
  for_each_tensor(tw.config(), loaded, [&](const TensorSlot& slot) {
    const ParameterInfo* info = i < held.size() ? held[i] : nullptr;
    ++i;
    if (!info) return;  // a routed expert another rank holds
    float* dst = tw.values.data() + info->offset;
    if (slot.matrix) {
      for (int64_t r = 0; r < slot.matrix->rows; ++r) slot.matrix->dequantize_row(r, dst + r * slot.matrix->cols);
    } else {
      std::copy(slot.vector->values, slot.vector->values + slot.vector->size, dst);
    }
  });
}

void save_model_dir(const Config& config, const std::vector<ParameterValues>& tensors, const std::string& dir, bool bf16) {
  std::filesystem::create_directories(dir);
  std::vector<TensorToWrite> out;
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(tensors.size());
  for (const auto& [info, src] : tensors) {
    const bool as_bf16 = bf16 && info->trained;  // the routing bias stays float32, as in DeepSeek-V3
    if (as_bf16) {
      halves.emplace_back(info->size);
      for (int64_t i = 0; i < info->size; ++i) halves.back()[i] = float_to_bf16(src[i]);
      out.push_back({info->name, DType::BF16, info->shape, halves.back().data(), static_cast<uint64_t>(info->size) * 2});
    } else {
      out.push_back({info->name, DType::F32, info->shape, src, static_cast<uint64_t>(info->size) * 4});
    }
  }
  write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), out);
  write_file_atomically((std::filesystem::path(dir) / "config.json").string(), config_json(config));
}

void save_model_dir(const TrainWeights& tw, const std::string& dir, bool bf16) {
  std::vector<ParameterValues> tensors;
  for (const auto& info : tw.infos()) tensors.push_back({&info, tw.values.data() + info.offset});
  save_model_dir(tw.config(), tensors, dir, bf16);
}

}  // namespace dsv2
