#include "model/latent_cache.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "core/error.h"
#include "ops/kernels.h"

namespace dsv2 {

CacheType parse_cache_type(const std::string& name) {
  if (name == "f32") return CacheType::kF32;
  if (name == "q8") return CacheType::kQ8;
  if (name == "q4") return CacheType::kQ4;
  throw std::invalid_argument("unknown cache type '" + name + "' (expected f32, q8 or q4)");
}

std::string cache_type_name(CacheType type) {
  switch (type) {
    case CacheType::kQ8: return "q8";
    case CacheType::kQ4: return "q4";
    default: return "f32";
  }
}

namespace {

// How each part is stored under a cache type (see latent_cache.h).
DType part_dtype(CacheType type, int64_t width, bool is_rope_key) {
  if (type == CacheType::kF32) return DType::F32;
  if (width % kQuantBlock != 0) return DType::BF16;
  if (type == CacheType::kQ8) return DType::I8;
  return is_rope_key ? DType::BF16 : DType::U8;
}

int64_t part_row_bytes(DType dtype, int64_t width) {
  const int64_t values = stored_columns(dtype, width) * static_cast<int64_t>(dtype_size(dtype));
  return values + (is_block_quantized(dtype) ? width / kQuantBlock * static_cast<int64_t>(sizeof(float)) : 0);
}

}  // namespace

WeightMatrix LatentCache::Part::view(int64_t rows) const {
  WeightMatrix w;
  w.dtype = dtype;
  w.rows = rows;
  w.cols = width;
  w.data = data.data();
  w.scale_inv = scales.empty() ? nullptr : scales.data();
  w.block_rows = 1;
  w.block_cols = kQuantBlock;
  return w;
}

size_t LatentCache::Part::row_bytes() const { return static_cast<size_t>(part_row_bytes(dtype, width)); }

void LatentCache::Part::resize(int64_t rows) {
  data.resize(static_cast<size_t>(rows * stored_columns(dtype, width)) * dtype_size(dtype));
  if (is_block_quantized(dtype)) scales.resize(static_cast<size_t>(rows * (width / kQuantBlock)));
}

void LatentCache::Part::store(int64_t row, const float* values) {
  encode_row(dtype, values, width, data.data() + static_cast<size_t>(row * stored_columns(dtype, width)) * dtype_size(dtype),
             scales.empty() ? nullptr : scales.data() + row * (width / kQuantBlock));
}

namespace {

std::atomic<uint64_t> next_cache_id{1};
std::mutex released_mutex;
std::vector<uint64_t> released_ids;

}  // namespace

std::vector<uint64_t> take_released_cache_ids() {
  std::lock_guard<std::mutex> lock(released_mutex);
  std::vector<uint64_t> ids;
  ids.swap(released_ids);
  return ids;
}

LatentCache::~LatentCache() {
  if (!mirrored_) return;
  std::lock_guard<std::mutex> lock(released_mutex);
  released_ids.push_back(id_);
}

LatentCache::LatentCache(const Config& c, int64_t capacity, int64_t page_tokens, CacheType type)
    : type_(type),
      kv_lora_rank_(c.kv_lora_rank),
      rope_dim_(c.qk_rope_head_dim),
      layers_(c.num_hidden_layers),
      capacity_(capacity),
      page_tokens_(page_tokens),
      id_(next_cache_id++) {
  require(capacity > 0, "latent cache capacity must be positive");
  require(page_tokens >= 0, "latent cache page size must not be negative");
  Part latent, rope_key;
  latent.dtype = part_dtype(type, kv_lora_rank_, false);
  latent.width = kv_lora_rank_;
  rope_key.dtype = part_dtype(type, rope_dim_, true);
  rope_key.width = rope_dim_;
  row_bytes_ = static_cast<int64_t>(latent.row_bytes() + rope_key.row_bytes());
  latent_.assign(layers_, latent);
  rope_key_.assign(layers_, rope_key);
  reserve(page_tokens_ > 0 ? 0 : capacity_);
}

void LatentCache::reserve(int64_t tokens) {
  require_lazy(tokens <= capacity_, [&] {
    return "context full: " + std::to_string(tokens) + " tokens exceed the cache capacity of " + std::to_string(capacity_);
  });
  if (tokens <= reserved_) return;
  const int64_t rows = page_tokens_ > 0 ? std::min(capacity_, (tokens + page_tokens_ - 1) / page_tokens_ * page_tokens_) : capacity_;
  for (int64_t l = 0; l < layers_; ++l) {
    latent_[l].resize(rows);
    rope_key_[l].resize(rows);
  }
  reserved_ = rows;
}

void LatentCache::set_length(int64_t length) {
  require_lazy(length >= 0 && length <= capacity_, [&] {
    return "latent cache length " + std::to_string(length) + " outside [0, " + std::to_string(capacity_) + "]";
  });
  length_ = length;
}

void LatentCache::store(int64_t layer, int64_t position, const float* latent, const float* rope_key) {
  latent_[layer].store(position, latent);
  rope_key_[layer].store(position, rope_key);
}

LatentCache::Rows LatentCache::read(int64_t layer, int64_t begin, int64_t count, std::vector<float>& buffer) const {
  const Part& latent = latent_[layer];
  const Part& rope_key = rope_key_[layer];
  if (type_ == CacheType::kF32)
    return {reinterpret_cast<const float*>(latent.data.data()) + begin * kv_lora_rank_,
            reinterpret_cast<const float*>(rope_key.data.data()) + begin * rope_dim_};
  buffer.resize(static_cast<size_t>(count * (kv_lora_rank_ + rope_dim_)));
  float* latents = buffer.data();
  float* rope_keys = latents + count * kv_lora_rank_;
  const WeightMatrix l = latent.view(reserved_), r = rope_key.view(reserved_);
  for (int64_t i = 0; i < count; ++i) {
    l.dequantize_row(begin + i, latents + i * kv_lora_rank_);
    r.dequantize_row(begin + i, rope_keys + i * rope_dim_);
  }
  return {latents, rope_keys};
}

int64_t LatentCache::bytes_per_token(const Config& c, CacheType type) {
  const int64_t latent = part_row_bytes(part_dtype(type, c.kv_lora_rank, false), c.kv_lora_rank);
  const int64_t rope_key = part_row_bytes(part_dtype(type, c.qk_rope_head_dim, true), c.qk_rope_head_dim);
  return (latent + rope_key) * c.num_hidden_layers;
}

int64_t LatentCache::mha_bytes_per_token(const Config& c, int64_t bytes_per_value) {
  return c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) * c.num_hidden_layers * bytes_per_value;
}

}  // namespace dsv2
