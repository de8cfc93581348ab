// The latent cache's storage types: bytes per token on the published shapes,
// and what a stored row reads back as (f32 exact; q8/q4 blocks of 32 values
// within half a quantization step, computed here from the format's definition;
// k_R in bfloat16 where the type says so), across paged growth.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "model/latent_cache.h"
#include "model/random_model.h"

namespace dsv2 {
namespace {

TEST(LatentCache, BytesPerTokenOnDeepSeekV2LiteShapes) {
  const Config c = published_config("deepseek-v2-lite");  // d_c 512, d_R 64, 27 layers
  EXPECT_EQ(LatentCache::bytes_per_token(c, CacheType::kF32), (512 + 64) * 4 * 27);
  // q8: a byte per value plus a float32 scale per 32 values = 9 bits per value.
  EXPECT_EQ(LatentCache::bytes_per_token(c, CacheType::kQ8), (512 + 512 / 32 * 4 + 64 + 64 / 32 * 4) * 27);
  // q4: c_kv in nibbles plus scales (5 bits), k_R in bfloat16: 6.2 bits per value.
  const int64_t q4 = (512 / 2 + 512 / 32 * 4 + 64 * 2) * 27;
  EXPECT_EQ(LatentCache::bytes_per_token(c, CacheType::kQ4), q4);
  EXPECT_NEAR(8.0 * q4 / (576.0 * 27), 6.22, 0.01);
}

TEST(LatentCache, ParsesTypeNames) {
  for (CacheType t : {CacheType::kF32, CacheType::kQ8, CacheType::kQ4}) EXPECT_EQ(parse_cache_type(cache_type_name(t)), t);
  EXPECT_THROW(parse_cache_type("q6"), std::invalid_argument);
}

// What a value reads back as under a block format with `q_max` levels each side.
float expected_block_value(const float* block, int j, float q_max, int lo, int hi) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(block[i]));
  if (amax == 0.0f) return 0.0f;
  const float step = amax / q_max;
  return step * static_cast<float>(std::clamp(static_cast<int>(std::lround(block[j] / step)), lo, hi));
}

TEST(LatentCache, RowsReadBackAsTheirTypeStoresThem) {
  Config c;
  c.kv_lora_rank = 64;
  c.qk_rope_head_dim = 32;
  c.num_hidden_layers = 2;
  Config odd = c;
  odd.qk_rope_head_dim = 16;  // not a multiple of 32: k_R falls back to bfloat16
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Config& config : {c, odd})
    for (CacheType type : {CacheType::kF32, CacheType::kQ8, CacheType::kQ4}) {
      SCOPED_TRACE(cache_type_name(type) + " d_R " + std::to_string(config.qk_rope_head_dim));
      const int64_t dc = config.kv_lora_rank, dr = config.qk_rope_head_dim, positions = 11;
      LatentCache cache(config, 16, /*page_tokens=*/4, type);
      std::vector<float> latents(positions * dc), rope_keys(positions * dr);
      for (auto& v : latents) v = normal(rng);
      for (auto& v : rope_keys) v = normal(rng);
      latents[3] = 0.0f;  // one all-zero block of 32 on position 0's second half:
      for (int64_t i = 32; i < 64; ++i) latents[i] = 0.0f;
      for (int64_t p = 0; p < positions; ++p) {
        cache.reserve(p + 1);  // pages grow (and move) under the stored rows
        for (int64_t layer = 0; layer < 2; ++layer) cache.store(layer, p, &latents[p * dc], &rope_keys[p * dr]);
      }
      std::vector<float> buffer;
      const LatentCache::Rows rows = cache.read(1, 2, positions - 2, buffer);
      for (int64_t p = 2; p < positions; ++p) {
        for (int64_t i = 0; i < dc; ++i) {
          const float x = latents[p * dc + i], got = rows.latents[(p - 2) * dc + i];
          const float* block = &latents[p * dc + i / 32 * 32];
          if (type == CacheType::kF32) {
            EXPECT_EQ(got, x);
          } else if (type == CacheType::kQ8) {
            EXPECT_FLOAT_EQ(got, expected_block_value(block, i % 32, 127.0f, -127, 127));
          } else {
            EXPECT_FLOAT_EQ(got, expected_block_value(block, i % 32, 7.0f, -8, 7));
          }
        }
        for (int64_t i = 0; i < dr; ++i) {
          const float x = rope_keys[p * dr + i], got = rows.rope_keys[(p - 2) * dr + i];
          if (type == CacheType::kF32) EXPECT_EQ(got, x);
          else if (type == CacheType::kQ8 && dr % 32 == 0)
            EXPECT_FLOAT_EQ(got, expected_block_value(&rope_keys[p * dr + i / 32 * 32], i % 32, 127.0f, -127, 127));
          else
            EXPECT_EQ(got, bf16_to_float(float_to_bf16(x)));
        }
      }
      // Position 0 (not read above): its all-zero block stays exactly zero.
      const LatentCache::Rows first = cache.read(0, 0, 1, buffer);
      for (int64_t i = 32; i < 64; ++i) EXPECT_EQ(first.latents[i], 0.0f);
      EXPECT_EQ(cache.reserved_bytes(), 12 * LatentCache::bytes_per_token(config, type));
    }
}

}  // namespace
}  // namespace dsv2
