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
  size_t i = 0;
  // for_each_tensor walks in the order TrainWeights laid its buffer out.
  for_each_tensor(tw.config(), loaded, [&](const TensorSlot& slot) {
    float* dst = tw.values.data() + tw.infos()[i++].offset;
    if (slot.matrix) {
      for (int64_t r = 0; r < slot.matrix->rows; ++r) slot.matrix->dequantize_row(r, dst + r * slot.matrix->cols);
    } else {
      std::copy(slot.vector->values, slot.vector->values + slot.vector->size, dst);
    }
  });
}

void save_model_dir(const TrainWeights& tw, const std::string& dir, bool bf16) {
  std::filesystem::create_directories(dir);
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(tw.infos().size());
  for (const auto& info : tw.infos()) {
    const float* src = tw.values.data() + info.offset;
    const bool as_bf16 = bf16 && info.trained;  // the routing bias stays float32, as in DeepSeek-V3
    if (as_bf16) {
      halves.emplace_back(info.size);
      for (int64_t i = 0; i < info.size; ++i) halves.back()[i] = float_to_bf16(src[i]);
      tensors.push_back({info.name, DType::BF16, info.shape, halves.back().data(), static_cast<uint64_t>(info.size) * 2});
    } else {
      tensors.push_back({info.name, DType::F32, info.shape, src, static_cast<uint64_t>(info.size) * 4});
    }
  }
  write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors);
  write_file_atomically((std::filesystem::path(dir) / "config.json").string(), config_json(tw.config()));
}

}  // namespace dsv2
