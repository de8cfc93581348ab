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

std::string config_json(const Config& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.model_type == "deepseek_v3" ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;
  j["q_lora_rank"] = c.q_lora_rank > 0 ? nlohmann::ordered_json(c.q_lora_rank) : nlohmann::ordered_json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts > 0 ? nlohmann::ordered_json(c.n_routed_experts) : nlohmann::ordered_json(nullptr);
  j["n_shared_experts"] = c.n_shared_experts > 0 ? nlohmann::ordered_json(c.n_shared_experts) : nlohmann::ordered_json(nullptr);
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = c.topk_method;
  j["scoring_func"] = c.scoring_func;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (c.rope_scaling.type == "yarn") {
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", c.rope_scaling.factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
                         {"beta_fast", c.rope_scaling.beta_fast}, {"beta_slow", c.rope_scaling.beta_slow},
                         {"mscale", c.rope_scaling.mscale}, {"mscale_all_dim", c.rope_scaling.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["attention_bias"] = false;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::ordered_json(c.eos_token_ids[0]) : nlohmann::ordered_json(c.eos_token_ids);
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
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
