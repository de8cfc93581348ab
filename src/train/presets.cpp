#include "train/presets.h"

#include "core/error.h"

namespace dsv2 {

namespace {

Config base(int64_t vocab) {
  Config c;
  c.model_type = "deepseek_v2";
  c.vocab_size = vocab;
  c.bos_token_id = 0;
  c.eos_token_ids = {1};
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  return c;
}

}  // namespace

std::vector<std::string> preset_names() { return {"tiny", "small", "small-dense"}; }

Config preset_config(const std::string& name, int64_t vocab) {
  Config c = base(vocab);
  if (name == "tiny") {  // for tests: seconds per step
    c.hidden_size = 64, c.num_hidden_layers = 2, c.num_attention_heads = 4;
    c.q_lora_rank = 32, c.kv_lora_rank = 32, c.qk_nope_head_dim = 16, c.qk_rope_head_dim = 8, c.v_head_dim = 16;
    c.intermediate_size = 128, c.moe_intermediate_size = 32;
    c.n_shared_experts = 1, c.n_routed_experts = 8, c.num_experts_per_tok = 2, c.first_k_dense_replace = 1;
    c.max_position_embeddings = 1024;
  } else if (name == "small" || name == "small-dense") {
    // The shipped default model: MLA with q and kv compression, 2 shared + 16 routed
    // experts (4 active), first layer dense, 4 "devices" with device-limited routing (M = 2).
    c.hidden_size = 256, c.num_hidden_layers = 6, c.num_attention_heads = 8;
    c.q_lora_rank = 128, c.kv_lora_rank = 64, c.qk_nope_head_dim = 32, c.qk_rope_head_dim = 16, c.v_head_dim = 32;
    c.intermediate_size = 768, c.moe_intermediate_size = 128;
    c.n_shared_experts = 2, c.n_routed_experts = 16, c.num_experts_per_tok = 4, c.first_k_dense_replace = 1;
    c.topk_method = "group_limited_greedy", c.n_group = 4, c.topk_group = 2;
    c.max_position_embeddings = 2048;
    if (name == "small-dense") {
      // Same active parameters per token: dense FFN as wide as shared + active routed experts.
      c.n_routed_experts = 0, c.n_shared_experts = 0, c.num_experts_per_tok = 0;
      c.topk_method = "greedy", c.n_group = 1, c.topk_group = 1;
      c.intermediate_size = (2 + 4) * 128;
    }
  } else {
    throw Error("unknown preset '" + name + "' (presets: tiny, small, small-dense)");
  }
  return c;
}

}  // namespace dsv2
