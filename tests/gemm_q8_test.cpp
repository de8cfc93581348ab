// The integer GEMM of q8/q4 weights (ops/gemm_q8.h) on every SIMD target
// compiled in and supported by this CPU, with and without the VNNI kernel:
// its block sums are exact and its float32 scale accumulation has a fixed
// order, so it must equal the scalar reference bit for bit, at shapes that
// leave partial row panels and token tiles. The reference itself is checked
// against a float64 sum of the dequantized products.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/gemm_q8.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/repack.h"
#include "ops/weight_matrix.h"
#include "quantized_matrix.h"

namespace dsv2 {
namespace {

using test::Quantized;
using test::quantized;

std::vector<float> random_activations(int64_t tokens, int64_t cols, uint32_t seed, bool extremes = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  for (auto& v : x) v = extremes ? (dist(rng) < 0 ? -5.0f : 5.0f) : dist(rng);
  return x;
}

template <class Body>
void for_each_target_and_kernel(Body body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    for (bool vnni : {true, false}) {
      allow_gemm_q8_vnni(vnni);
      SCOPED_TRACE(std::string(hwy::TargetName(target)) + " " + gemm_q8_kernel());
      body();
    }
  }
  allow_gemm_q8_vnni(true);
  hwy::SetSupportedTargetsForTest(0);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(GemmQ8, MatchesReferenceBitForBitOnEveryTarget) {
  std::vector<std::string> kernels;
  for_each_target_and_kernel([&] {
    kernels.push_back(gemm_q8_kernel());
    for (int terms : {2, 1})
    for (DType dtype : {DType::I8, DType::U8})
      for (DType scale_dtype : {DType::F16, DType::F32})
      for (bool extremes : {false, true})
        for (int64_t cols : {32, 96, 1024})
          for (int64_t rows : {1, 7, 32, 45, 100})
            for (int64_t tokens : {1, 3, 4, 5, 9}) {
              SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << rows << "x" << cols << ", " << tokens
                                              << " tokens" << (extremes ? ", extremes" : "") << ", "
                                              << dtype_name(scale_dtype) << " scales, " << terms << " term(s)");
              const Quantized q = quantized(dtype, rows + 5, cols, 11 + static_cast<uint32_t>(rows), extremes, scale_dtype);
              const auto x = random_activations(tokens, cols, 23 + static_cast<uint32_t>(tokens), extremes);
              Q8Activations xa;
              xa.quantize(x.data(), tokens, cols, terms);
              // rows [3, 3 + rows) of the matrix, into a wider output (ldy > rows)
              const int64_t ldy = rows + 2;
              std::vector<float> got(static_cast<size_t>(tokens * ldy), -1.0f), want = got;
              gemm_q8(xa, q.w, 3, rows, got.data(), ldy);
              reference::gemm_q8(xa, q.w, 3, rows, want.data(), ldy);
              ASSERT_TRUE(same_bits(got, want));
            }
  });
  // This CPU ran each kernel it has; say which, so a log shows whether VNNI was covered.
  std::string seen;
  for (const auto& k : kernels) seen += k + " ";
  std::printf("[ gemm_q8 ] kernels exercised: %s\n", seen.c_str());
}

// Wide rows: gemm_q8 takes the tokens in chunks that fit in L2 (32 at 4096
// columns) and packs the rows in groups of panels (2 panels of 32 rows there),
// each group once for every chunk: 70 tokens × 100 rows cross both boundaries
// with partial chunks, groups, panels and tiles.
TEST(GemmQ8, MatchesReferenceAcrossTokenChunksAndPanelGroups) {
  for_each_target_and_kernel([&] {
    for (int terms : {2, 1})
    for (DType dtype : {DType::I8, DType::U8}) {
      const int64_t rows = 100, cols = 4096, tokens = 70;
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " on " << gemm_q8_kernel() << ", " << terms << " term(s)");
      const Quantized q = quantized(dtype, rows + 3, cols, 31);
      const auto x = random_activations(tokens, cols, 37);
      Q8Activations xa;
      xa.quantize(x.data(), tokens, cols, terms);
      std::vector<float> got(static_cast<size_t>(tokens * rows), -1.0f), want = got;
      gemm_q8(xa, q.w, 3, rows, got.data(), rows);
      reference::gemm_q8(xa, q.w, 3, rows, want.data(), rows);
      ASSERT_TRUE(same_bits(got, want));
    }
  });
}

// --repack (ops/repack.h): panels built once at load give the reference's
// bits on every kernel, across token chunks, panel groups and a partial last
// panel, also in a row slice starting at a panel; the portable kernel reads rows.
TEST(GemmQ8, RepackedPanelsGiveTheReferenceBits) {
  use_gemm_q8_for_prompts(true);  // (else, with AVX512-BF16, q8/q4 prompts take widened bf16 panels)
  for_each_target_and_kernel([&] {
    for (int terms : {2, 1})
      for (DType dtype : {DType::I8, DType::U8})
        for (int64_t cols : {96, 4096}) {
          const int64_t rows = 100, tokens = 70;
          SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << rows << "x" << cols << ", " << terms << " term(s)");
          const Quantized q = quantized(dtype, rows, cols, 41);
          WeightMatrix repacked = q.w;
          AnonymousPages storage;
          repack_rows(repacked, storage);
          if (std::string(gemm_q8_kernel()) == "portable") {
            EXPECT_EQ(repacked.panels, nullptr);
            continue;
          }
          ASSERT_NE(repacked.panels, nullptr);
          EXPECT_EQ(repacked_bytes(q.w), static_cast<size_t>(4 * (cols / kQuantBlock) * 32 * (kQuantBlock + 4)));
          const auto x = random_activations(tokens, cols, 43);
          Q8Activations xa;
          xa.quantize(x.data(), tokens, cols, terms);
          std::vector<float> got(static_cast<size_t>(tokens * rows), -1.0f), want = got;
          gemm_q8(xa, repacked, 0, rows, got.data(), rows);
          reference::gemm_q8(xa, q.w, 0, rows, want.data(), rows);
          ASSERT_TRUE(same_bits(got, want));
          const WeightMatrix slice = repacked.row_slice(64, rows - 64);
          EXPECT_EQ(slice.panels, repacked.panels + 2 * repacked.panel_bytes);
          std::vector<float> sliced(static_cast<size_t>(tokens * (rows - 64))), sliced_want = sliced;
          gemm_q8(xa, slice, 0, rows - 64, sliced.data(), rows - 64);
          reference::gemm_q8(xa, q.w.row_slice(64, rows - 64), 0, rows - 64, sliced_want.data(), rows - 64);
          ASSERT_TRUE(same_bits(sliced, sliced_want));
          EXPECT_EQ(repacked.row_slice(3, 50).panels, nullptr);
        }
  });
  use_gemm_q8_for_prompts(false);
}

// reference::gemm_q8 of xa against every row of w is, in double precision,
// Σ_c w[c]·xs·(q + residual/256) (the residual 0 with one term).
void expect_reference_is_the_product(const Q8Activations& xa, const WeightMatrix& w) {
  const int64_t rows = w.rows, cols = w.cols, tokens = xa.tokens, blocks = cols / kQuantBlock;
  std::vector<float> y(static_cast<size_t>(tokens * rows)), w_row(static_cast<size_t>(cols));
  reference::gemm_q8(xa, w, 0, rows, y.data(), rows);
  for (int64_t r = 0; r < rows; ++r) {
    w.dequantize_row(r, w_row.data());
    for (int64_t t = 0; t < tokens; ++t) {
      double want = 0.0, magnitude = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const double residual = xa.terms == 2 ? xa.residual[t * cols + c] / 256.0 : 0.0;
        const double term = static_cast<double>(w_row[c]) * xa.scales[t * blocks + c / kQuantBlock] *
                            (xa.q[t * cols + c] + residual);
        want += term, magnitude += std::fabs(term);
      }
      // per block: the int32 sum's conversion, the product by xs, the fma (and w_row's own scale product)
      EXPECT_NEAR(y[t * rows + r], want, 5.0 * blocks * std::ldexp(1.0, -24) * magnitude + 1e-6);
    }
  }
}

// Two terms: x ≈ xs·(q + residual/256) with the block sums the kernels start
// from; one term: the activations of the one-token path (quantize_activation_q8).
// Either way the reference is the scaled integer product.
TEST(GemmQ8, ReferenceIsTheScaledIntegerProduct) {
  for (int terms : {2, 1})
  for (DType dtype : {DType::I8, DType::U8}) {
    const int64_t rows = 9, cols = 256, tokens = 6, blocks = cols / kQuantBlock;
    const Quantized q = quantized(dtype, rows, cols, 5);
    const auto x = random_activations(tokens, cols, 7);
    Q8Activations xa;
    xa.quantize(x.data(), tokens, cols, terms);
    std::vector<int8_t> one_q(static_cast<size_t>(cols));
    std::vector<float> one_s(static_cast<size_t>(blocks));
    for (int64_t t = 0; t < tokens; ++t) {
      quantize_activation_q8(x.data() + t * cols, cols, one_q.data(), one_s.data());
      ASSERT_TRUE(std::equal(one_q.begin(), one_q.end(), xa.q.begin() + t * cols));  // q is that of one token either way
      ASSERT_TRUE(std::equal(one_s.begin(), one_s.end(), xa.scales.begin() + t * blocks));
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t s = 0, rs = 0;
        const float scale = xa.scales[t * blocks + b];
        for (int64_t j = 0; j < kQuantBlock; ++j) {
          const int64_t at = t * cols + b * kQuantBlock + j;
          s += xa.q[at];
          if (terms == 1) continue;
          rs += xa.residual[at];
          // the two terms leave at most about half a residual step (a whole one where the residual was clamped)
          EXPECT_LE(std::fabs(x[at] - scale * (xa.q[at] + xa.residual[at] / 256.0)), scale / 256.0 + 1e-6 * std::fabs(x[at]));
        }
        ASSERT_EQ(xa.sums[t * blocks + b], s);
        if (terms == 2) {
          ASSERT_EQ(xa.residual_sums[t * blocks + b], rs);
        }
      }
    }
    if (terms == 1) {
      EXPECT_TRUE(xa.residual.empty() && xa.residual_sums.empty());
    }
    expect_reference_is_the_product(xa, q.w);
  }
}

TEST(GemmQ8, TermsOtherThanOneOrTwoAreErrors) {
  Q8Activations xa;
  const std::vector<float> x(32, 1.0f);
  EXPECT_THROW(xa.quantize(x.data(), 1, 32, 3), Error);
  EXPECT_THROW(set_gemm_q8_activation_terms(0), Error);
}

// matmul of several tokens on q8/q4 weights is the integer GEMM of the quantized tokens.
TEST(GemmQ8, MatmulOfSeveralTokensTakesIt) {
  for (DType dtype : {DType::I8, DType::U8}) {
    const int64_t rows = 77, cols = 160, tokens = kGemmMinTokens + 3;
    const Quantized q = quantized(dtype, rows, cols, 3);
    const auto x = random_activations(tokens, cols, 4);
    std::vector<float> got(static_cast<size_t>(tokens * rows)), want = got;
    set_num_threads(2);
    for (int terms : {2, 1}) {
      set_gemm_q8_activation_terms(terms);
      matmul(x.data(), tokens, q.w, got.data());
      Q8Activations xa;
      xa.quantize(x.data(), tokens, cols, terms);
      reference::gemm_q8(xa, q.w, 0, rows, want.data(), rows);
      EXPECT_TRUE(same_bits(got, want)) << terms << " term(s)";
    }
    set_gemm_q8_activation_terms(2);
  }
}

}  // namespace
}  // namespace dsv2
