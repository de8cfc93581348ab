#include "model/latent_cache.h"

#include "core/error.h"

namespace dsv2 {

LatentCache::LatentCache(const Config& c, int64_t capacity)
    : kv_lora_rank_(c.kv_lora_rank), rope_dim_(c.qk_rope_head_dim), capacity_(capacity) {
  require(capacity > 0, "latent cache capacity must be positive");
  latent_.assign(c.num_hidden_layers, std::vector<float>(static_cast<size_t>(capacity * kv_lora_rank_)));
  rope_key_.assign(c.num_hidden_layers, std::vector<float>(static_cast<size_t>(capacity * rope_dim_)));
}

void LatentCache::set_length(int64_t length) {
  require(length >= 0 && length <= capacity_, "latent cache length " + std::to_string(length) +
                                                  " outside [0, " + std::to_string(capacity_) + "]");
  length_ = length;
}

int64_t LatentCache::bytes_per_token(const Config& c, int64_t bytes_per_value) {
  return (c.kv_lora_rank + c.qk_rope_head_dim) * c.num_hidden_layers * bytes_per_value;
}

int64_t LatentCache::mha_bytes_per_token(const Config& c, int64_t bytes_per_value) {
  return c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) * c.num_hidden_layers * bytes_per_value;
}

}  // namespace dsv2
