// AMX bf16 tile products (ops/amx.h): the packed layouts are what the header
// defines, the products equal a double-precision sum over the same bfloat16
// values, and decoding over a quantized cache with AMX stays within bfloat16
// rounding of the float32 path. Skipped on CPUs (or kernels) without AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random_model.h"
#include "ops/amx.h"
#include "test_util.h"

namespace dsv2 {
namespace {

float bf16_round(float x) { return bf16_to_float(float_to_bf16(x)); }

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

TEST(Amx, PackedLayoutsAreTheDocumentedOnes) {
  if (!amx::available()) GTEST_SKIP() << "no AMX-BF16 on this CPU or kernel";
  const int64_t k = 37, k_padded = 64, n = 48, ld = 50;  // odd k: the last pair's second row is zero
  const auto b = random_values(k * ld, 1);
  std::vector<uint16_t> packed(k_padded * n, 0xffff);
  amx::pack_b(b.data(), ld, k, k_padded, n, packed.data());
  for (int64_t kk = 0; kk < k_padded; ++kk)
    for (int64_t j = 0; j < n; ++j)
      ASSERT_EQ(packed[kk / 2 * 2 * n + 2 * j + kk % 2], kk < k ? float_to_bf16(b[kk * ld + j]) : 0) << kk << "," << j;

  const int64_t k2 = 64, n2 = 40;  // from Bᵀ [n2, k2], into a B 48 wide
  const auto bt = random_values(n2 * ld * 2, 2);
  std::vector<uint16_t> packed_t(k2 * n, 0xffff);
  amx::pack_b_transposed(bt.data(), 2 * ld, k2, n2, n, packed_t.data());
  for (int64_t kk = 0; kk < k2; ++kk)
    for (int64_t j = 0; j < n; ++j)
      ASSERT_EQ(packed_t[kk / 2 * 2 * n + 2 * j + kk % 2], j < n2 ? float_to_bf16(bt[j * 2 * ld + kk]) : 0xffff);

  // q8 rows (codes, a scale per 32) → bf16 rows and pair-interleaved B in one pass;
  // an odd row count leaves the last pair's second row zero, then whole zero pairs.
  const int64_t positions = 5, width = 64, k_q8 = 32;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> code(-127, 127);
  std::vector<int8_t> codes(positions * width);
  for (auto& c : codes) c = static_cast<int8_t>(code(rng));
  const auto q8_scales = random_values(positions * width / 32, 10);
  std::vector<uint16_t> q8_rows(positions * 80, 0x1234), q8_b(k_q8 * width, 0xffff);
  amx::q8_operands(codes.data(), q8_scales.data(), positions, width, k_q8, q8_rows.data(), 80, q8_b.data());
  for (int64_t t = 0; t < k_q8; ++t)
    for (int64_t c = 0; c < width; ++c) {
      const uint16_t value = t < positions ? float_to_bf16(codes[t * width + c] * q8_scales[t * 2 + c / 32]) : 0;
      if (t < positions) {
        ASSERT_EQ(q8_rows[t * 80 + c], value) << t << "," << c;
      }
      ASSERT_EQ(q8_b[t / 2 * 2 * width + 2 * c + t % 2], value) << t << "," << c;
    }
  EXPECT_EQ(q8_rows[79], 0x1234) << "past the row width stays untouched";

  const int64_t m = 5, cols = 40;  // 32 by the vector path, 8 by the scalar tail
  const auto a = random_values(m * ld, 3);
  std::vector<uint16_t> rows(m * 64, 0x1234);
  amx::to_bf16_rows(a.data(), ld, m, cols, rows.data(), 64);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(rows[i * 64 + c], float_to_bf16(a[i * ld + c]));
    EXPECT_EQ(rows[i * 64 + cols], 0x1234) << "past k stays untouched";
  }
}

TEST(Amx, ProductsEqualTheSumsOverTheSameBfloat16Values) {
  if (!amx::available()) GTEST_SKIP() << "no AMX-BF16 on this CPU or kernel";
  struct Shape {
    int64_t m, n, k;
  };
  // One tile; 2×2 blocks; odd tile counts (2×2 blocks and single tiles); 4×1 and
  // 1×4 blocks with single tiles left over; the decode shapes.
  for (const Shape s :
       {Shape{16, 16, 32}, Shape{32, 32, 64}, Shape{48, 80, 96}, Shape{80, 16, 32},
                          Shape{16, 96, 32}, Shape{128, 16, 576}, Shape{16, 512, 128}})
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + (accumulate ? " +=" : ""));
      const int64_t lda = s.k + 16, ldc = s.n + 8;
      const auto a = random_values(s.m * lda, 4), b = random_values(s.k * s.n, 5), c0 = random_values(s.m * ldc, 6);
      std::vector<uint16_t> a16(s.m * lda), b16(s.k * s.n);
      amx::to_bf16_rows(a.data(), lda, s.m, s.k, a16.data(), lda);
      amx::pack_b(b.data(), s.n, s.k, s.k, s.n, b16.data());
      std::vector<float> c = c0;
      amx::gemm_bf16(s.m, s.n, s.k, a16.data(), lda, b16.data(), c.data(), ldc, accumulate);
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          double sum = accumulate ? c0[i * ldc + j] : 0.0, magnitude = std::fabs(sum);
          for (int64_t kk = 0; kk < s.k; ++kk) {
            const double term = double(bf16_round(a[i * lda + kk])) * bf16_round(b[kk * s.n + j]);
            sum += term;
            magnitude += std::fabs(term);
          }
          // Exact products, float32 sums in the hardware's order.
          ASSERT_NEAR(c[i * ldc + j], sum, 1e-6 * magnitude + 1e-6) << i << "," << j;
        }
      for (int64_t i = 0; i < s.m; ++i)  // the columns between n and ldc are not written
        for (int64_t j = s.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]);
    }
}

// A model whose attention takes the AMX path: 16 heads (decode queries fill a
// tile's 16 rows), d_c and d_R multiples of 32. Dense MLPs only: a rounding
// difference that flips one token's expert choice would change its logits by
// far more than the rounding itself.
Config amx_shaped_config() {
  Config c = load_config(test::fixture("v2_lite"));
  c.first_k_dense_replace = c.num_hidden_layers;
  c.num_attention_heads = 16;
  c.kv_lora_rank = 64;
  c.qk_rope_head_dim = 32;
  return c;
}

std::vector<float> decode_logits(Model& model, const std::vector<int32_t>& ids, int64_t prefill, CacheType type) {
  const int64_t vocab = model.config().vocab_size, total = static_cast<int64_t>(ids.size());
  LatentCache cache(model.config(), total, 0, type);
  std::vector<float> logits(static_cast<size_t>(total * vocab));
  model.forward(ids.data(), prefill, cache, AttentionPath::kAbsorbed, logits.data());
  for (int64_t t = prefill; t < total; ++t) model.forward(&ids[t], 1, cache, AttentionPath::kAbsorbed, logits.data() + t * vocab);
  return logits;
}

// Positions across tiles and threads, prefill blocks and causal masks: a slip in
// any of them moves logits by their own size, while rounding the products'
// inputs to bfloat16 must move them less than storing the cache quantized
// already did. (How close the AMX path stays on a trained model and real text:
// QuantizedCache.StaysCloseToFloat32CacheOnRealText.)
TEST(Amx, DecodingOverAQuantizedCacheMovesLogitsLessThanTheQuantization) {
  if (!amx::available()) GTEST_SKIP() << "no AMX-BF16 on this CPU or kernel";
  test::TempDir tmp;
  write_random_model(amx_shaped_config(), DType::F32, tmp.path("m"), 11);
  Model model(tmp.path("m"));
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.config().vocab_size - 1));
  std::vector<int32_t> ids(300);  // past two 128-position tiles; prefill rows in blocks of 8 (128 queries)
  for (auto& id : ids) id = token(rng);
  amx::set_enabled(false);
  const auto exact = decode_logits(model, ids, 200, CacheType::kF32);
  for (CacheType type : {CacheType::kQ8, CacheType::kQ4}) {
    SCOPED_TRACE(cache_type_name(type));
    amx::set_enabled(false);
    const auto float32 = decode_logits(model, ids, 200, type);
    amx::set_enabled(true);
    const auto tiles = decode_logits(model, ids, 200, type);
    const test::Diff rounding = test::compare(tiles, float32), quantization = test::compare(float32, exact);
    EXPECT_GT(rounding.max_abs_diff, 0.0f) << "the AMX path did not run";
    EXPECT_LT(rounding.max_abs_diff, quantization.max_abs_diff);
  }
  // A float32 cache never takes the bfloat16 path.
  EXPECT_EQ(decode_logits(model, ids, 200, CacheType::kF32), exact);
}

}  // namespace
}  // namespace dsv2
