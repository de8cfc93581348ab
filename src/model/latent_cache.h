// The MLA cache. Per token and layer it holds only what DeepSeek-V2 §2.1.2
// says must be kept: the normalised compressed KV latent c_kv (kv_lora_rank
// numbers) and the shared, already-rotated RoPE key k_R (qk_rope_head_dim
// numbers). Keys and values of the heads are re-derived from c_kv.
//
// The cache can be stored quantized (DeepSeek-V2 is served with its cache
// quantized to about 6 bits per value on average), in dsv2's q8/q4 block
// formats of ops/kernels.h:
//   f32  c_kv and k_R as float32                       32 bits per value
//   q8   c_kv and k_R as q8 blocks (scale per 32)       9 bits per value
//   q4   c_kv as q4 blocks, k_R as bfloat16            ~6.2 bits per value on V2 shapes
// k_R, which carries the positions, is never below bfloat16 in q4; any part
// whose width is not a multiple of 32 is stored as bfloat16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "ops/weight_matrix.h"

namespace dsv2 {

enum class CacheType { kF32, kQ8, kQ4 };
// "f32" | "q8" | "q4"; throws std::invalid_argument naming the accepted values.
CacheType parse_cache_type(const std::string& name);
std::string cache_type_name(CacheType type);

class LatentCache {
 public:
  // Room for `capacity` tokens. With page_tokens > 0 the memory is reserved
  // page by page as the sequence grows (a server holding many short
  // conversations then pays for what they use); otherwise all at once.
  LatentCache(const Config& config, int64_t capacity, int64_t page_tokens = 0, CacheType type = CacheType::kF32);
  ~LatentCache();
  // A cache is one sequence's state; the ranks of a split model keep mirrors
  // of it under its id, so it is neither copied nor moved.
  LatentCache(const LatentCache&) = delete;
  LatentCache& operator=(const LatentCache&) = delete;

  // Unique in this process: names the cache to the other ranks of a split model.
  uint64_t id() const { return id_; }
  int64_t page_tokens() const { return page_tokens_; }
  // Marks the cache as mirrored on other ranks: its destruction is then
  // recorded, for the model to tell them (take_released_cache_ids).
  void set_mirrored() const { mirrored_ = true; }

  CacheType type() const { return type_; }
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void set_length(int64_t length);  // e.g. 0 to start over; keeps the memory
  // Makes rows [0, tokens) addressable (whole pages); invalidates earlier pointers.
  void reserve(int64_t tokens);
  int64_t reserved_tokens() const { return reserved_; }
  int64_t reserved_bytes() const { return reserved_ * row_bytes_ * layers_; }

  // Stores position `position` of layer `layer` (the row must be reserved),
  // quantizing to the cache's type.
  void store(int64_t layer, int64_t position, const float* latent, const float* rope_key);

  // Positions [begin, begin + count) of a layer as float32 rows, [count, d_c]
  // and [count, d_R]: pointers into the cache when it is float32 (no copy),
  // else into `buffer`, which is resized to hold the converted rows.
  struct Rows {
    const float* latents;
    const float* rope_keys;
  };
  Rows read(int64_t layer, int64_t begin, int64_t count, std::vector<float>& buffer) const;
  // The stored c_kv and k_R rows of a layer as they are (rows are positions;
  // valid until the next reserve), for kernels that read the storage format.
  WeightMatrix stored_latents(int64_t layer) const { return latent_[layer].view(reserved_); }
  WeightMatrix stored_rope_keys(int64_t layer) const { return rope_key_[layer].view(reserved_); }

  // Bytes per token over all layers, block scales included.
  static int64_t bytes_per_token(const Config& config, CacheType type = CacheType::kF32);
  // What standard multi-head attention would cache: K (n_h·(d_n+d_R)) and V (n_h·d_v) per layer.
  static int64_t mha_bytes_per_token(const Config& config, int64_t bytes_per_value = 4);

 private:
  // One part (c_kv or k_R) of every position of one layer, stored as a weight
  // matrix would be: rows are positions.
  struct Part {
    DType dtype = DType::F32;
    int64_t width = 0;
    std::vector<std::byte> data;
    std::vector<float> scales;
    WeightMatrix view(int64_t rows) const;
    void resize(int64_t rows);
    void store(int64_t row, const float* values);
    size_t row_bytes() const;  // scales included
  };

  CacheType type_;
  int64_t kv_lora_rank_, rope_dim_, layers_, capacity_, page_tokens_, reserved_ = 0, length_ = 0, row_bytes_ = 0;
  std::vector<Part> latent_, rope_key_;
  uint64_t id_;
  mutable bool mirrored_ = false;
};

// The ids of mirrored caches destroyed since the last call (any thread).
std::vector<uint64_t> take_released_cache_ids();

}  // namespace dsv2
