#include "model/latent_cache.h"

#include <algorithm>

#include "core/error.h"

namespace dsv2 {

LatentCache::LatentCache(const Config& c, int64_t capacity, int64_t page_tokens)
    : kv_lora_rank_(c.kv_lora_rank),
      rope_dim_(c.qk_rope_head_dim),
      layers_(c.num_hidden_layers),
      capacity_(capacity),
      page_tokens_(page_tokens) {
  require(capacity > 0, "latent cache capacity must be positive");
  require(page_tokens >= 0, "latent cache page size must not be negative");
  latent_.resize(layers_);
  rope_key_.resize(layers_);
  reserve(page_tokens_ > 0 ? 0 : capacity_);
}

void LatentCache::reserve(int64_t tokens) {
  require(tokens <= capacity_, "context full: " + std::to_string(tokens) + " tokens exceed the cache capacity of " +
                                   std::to_string(capacity_));
  if (tokens <= reserved_) return;
  const int64_t rows = page_tokens_ > 0 ? std::min(capacity_, (tokens + page_tokens_ - 1) / page_tokens_ * page_tokens_) : capacity_;
  for (int64_t l = 0; l < layers_; ++l) {
    latent_[l].resize(static_cast<size_t>(rows * kv_lora_rank_));
    rope_key_[l].resize(static_cast<size_t>(rows * rope_dim_));
  }
  reserved_ = rows;
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
