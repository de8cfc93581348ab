// The MLA cache. Per token and layer it holds only what DeepSeek-V2 §2.1.2
// says must be kept: the normalised compressed KV latent c_kv (kv_lora_rank
// numbers) and the shared, already-rotated RoPE key k_R (qk_rope_head_dim
// numbers). Keys and values of the heads are re-derived from c_kv.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv2 {

class LatentCache {
 public:
  // Room for `capacity` tokens. With page_tokens > 0 the memory is reserved
  // page by page as the sequence grows (a server holding many short
  // conversations then pays for what they use); otherwise all at once.
  LatentCache(const Config& config, int64_t capacity, int64_t page_tokens = 0);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void set_length(int64_t length);  // e.g. 0 to start over; keeps the memory
  // Makes rows [0, tokens) addressable (whole pages); invalidates earlier pointers.
  void reserve(int64_t tokens);
  int64_t reserved_tokens() const { return reserved_; }
  int64_t reserved_bytes() const { return reserved_ * (kv_lora_rank_ + rope_dim_) * layers_ * 4; }

  // Rows of layer `layer`, contiguous over positions: [capacity, kv_lora_rank].
  float* latents(int64_t layer) { return latent_[layer].data(); }
  // [capacity, qk_rope_head_dim]
  float* rope_keys(int64_t layer) { return rope_key_[layer].data(); }

  // Bytes per token over all layers at float32: (kv_lora_rank + qk_rope_head_dim) · layers · 4.
  static int64_t bytes_per_token(const Config& config, int64_t bytes_per_value = 4);
  // What standard multi-head attention would cache: K (n_h·(d_n+d_R)) and V (n_h·d_v) per layer.
  static int64_t mha_bytes_per_token(const Config& config, int64_t bytes_per_value = 4);

 private:
  int64_t kv_lora_rank_, rope_dim_, layers_, capacity_, page_tokens_, reserved_ = 0, length_ = 0;
  std::vector<std::vector<float>> latent_, rope_key_;
};

}  // namespace dsv2
