// The model's hyper-parameters, parsed from a Hugging Face config.json of
// model_type "deepseek_v2" or "deepseek_v3". Field names are the HF ones.
// Absent fields take the defaults of DeepSeek's published configuration code;
// every value is validated and an error names the file and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv2 {

struct RopeScaling {
  std::string type;  // "" (none) or "yarn"
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;  // 0: absent
};

struct Config {
  std::string model_type;  // "deepseek_v2" | "deepseek_v3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP width
  int64_t moe_intermediate_size = 0;  // width of one routed expert
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;  // V3 multi-token prediction layers (ignored for inference)
  int64_t num_attention_heads = 0;

  // Multi-head latent attention.
  int64_t q_lora_rank = 0;  // 0: queries are not compressed (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // DeepSeekMoE.
  int64_t n_routed_experts = 0;  // 0: dense model
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  std::string topk_method = "greedy";  // greedy | group_limited_greedy | noaux_tc
  std::string scoring_func = "softmax";  // softmax | sigmoid
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;

  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 2048;
  RopeScaling rope_scaling;
  // DeepSeek rotates interleaved pairs (x[2i], x[2i+1]); transformers' V3 option
  // rope_interleave=false means the weights were permuted for half-split rotation.
  bool rope_interleave = true;
  bool tie_word_embeddings = false;
  // A reward model (docs/ALIGNMENT.md): config.json's architectures name
  // DeepseekV2ForSequenceClassification (or V3's) with num_labels 1, and the
  // checkpoint has score.weight [1, hidden_size], the scalar head on the last
  // token's final hidden state. 0: a causal LM.
  int64_t num_labels = 0;
  bool is_reward_model() const { return num_labels > 0; }
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  // Block size of float8 weights' scales (quantization_config.weight_block_size).
  int64_t fp8_block_rows = 128;
  int64_t fp8_block_cols = 128;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
};

// Parses and validates `json_text`; `file` is used in error messages.
Config parse_config(const std::string& json_text, const std::string& file);
// Reads DIR/config.json (or a config file path).
Config load_config(const std::string& path);
// config.json text for a Config (the fields dsv2 and transformers read).
std::string config_json(const Config& config);

}  // namespace dsv2
