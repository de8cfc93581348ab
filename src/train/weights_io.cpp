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
  const Config& c = tw.config();
  const Checkpoint checkpoint(dir);
  // A reward model starting from a language model (dsv2 rm): the checkpoint has
  // no score.weight, which keeps its initial value. It is for_each_tensor's last
  // tensor, so the others are read as a causal LM's.
  Config stored = c;
  const bool has_score = checkpoint.find("score.weight") != nullptr;
  if (!has_score) stored.num_labels = 0;
  Weights loaded = load_weights(stored, checkpoint);  // validates names, shapes and dtypes
  // MTP modules the checkpoint has (a model trained without MTP has none: those
  // modules keep the values they were initialised with).
  std::vector<bool> has_module(c.num_nextn_predict_layers);
  loaded.mtp.resize(c.num_nextn_predict_layers);
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    has_module[k] = checkpoint.find("model.layers." + std::to_string(c.num_hidden_layers + k) + ".eh_proj.weight") != nullptr;
    if (has_module[k])
      visit_mtp_layer(c, k, loaded.mtp[k], [&](const TensorSlot& slot) { bind_tensor(c, checkpoint, slot, loaded.converted); });
  }
  std::vector<const ParameterInfo*> held;  // per for_each_trained_tensor entry
  for (const auto& info : tw.infos()) {
    if (held.size() <= static_cast<size_t>(info.slot)) held.resize(info.slot + 1, nullptr);
    held[info.slot] = &info;
  }
  size_t i = 0;
  auto copy = [&](const TensorSlot& slot) {
    const ParameterInfo* info = i < held.size() ? held[i] : nullptr;
    ++i;
    if (!info) return;  // a routed expert another rank holds
    float* dst = tw.values.data() + info->offset;
    if (slot.matrix) {
      for (int64_t r = 0; r < slot.matrix->rows; ++r) slot.matrix->dequantize_row(r, dst + r * slot.matrix->cols);
    } else {
      std::copy(slot.vector->values, slot.vector->values + slot.vector->size, dst);
    }
  };
  for_each_tensor(stored, loaded, copy);
  if (c.is_reward_model() && !has_score) ++i;  // score.weight: keeps its initial value
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k)
    visit_mtp_layer(c, k, loaded.mtp[k], [&](const TensorSlot& slot) {
      if (has_module[k]) return copy(slot);
      ++i;  // not in the checkpoint: keeps its initial value
    });
}

void save_model_dir(const Config& config, const std::vector<ParameterValues>& tensors, const std::string& dir, bool bf16) {
  std::filesystem::create_directories(dir);
  // V3's layout: each MTP layer carries copies of the embedding and the output
  // head it shares with the main model, where loaders that know the layout
  // (vLLM, SGLang) read them.
  const int64_t L = config.num_hidden_layers;
  std::vector<ParameterValues> all = tensors;
  std::vector<ParameterInfo> copies;
  copies.reserve(2 * config.num_nextn_predict_layers);
  const ParameterValues* embed = nullptr;
  const ParameterValues* head = nullptr;
  for (const auto& t : tensors) {
    if (t.info->name == "model.embed_tokens.weight") embed = &t;
    if (t.info->name == "lm_head.weight") head = &t;
  }
  if (!head) head = embed;  // tied embeddings
  for (int64_t k = 0; k < config.num_nextn_predict_layers && embed; ++k) {
    const std::string p = "model.layers." + std::to_string(L + k) + ".";
    for (auto [name, source] : {std::pair{"embed_tokens.weight", embed}, std::pair{"shared_head.head.weight", head}}) {
      copies.push_back(*source->info);
      copies.back().name = p + name;
      all.push_back({&copies.back(), source->values});
    }
  }
  std::vector<TensorToWrite> out;
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(all.size());
  for (const auto& [info, src] : all) {
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
