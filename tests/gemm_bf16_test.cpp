// The bf16 GEMM (ops/gemm_bf16.h) on both of its paths (the AVX512-BF16
// kernel where this CPU has it, the float32 sgemm path always): every output
// is a float32 sum of the exact products of bf16 weights and bf16-rounded
// activations, so against the float64 sum S of those products it may differ
// only by float32 summation error, |y - S| <= γ_n·Σ|products| with
// γ_n = n·u / (1 - n·u), u = 2^-24, n = the number of terms (a bound for any
// summation order). The scalar reference (the kernel's own order) must meet
// it too, and the AVX512 kernel is checked against it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/parallel.h"
#include "io/mapped_file.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/repack.h"
#include "ops/weight_matrix.h"
#include "quantized_matrix.h"

namespace dsv2 {
namespace {

struct Bf16Matrix {
  WeightMatrix w;
  std::vector<uint16_t> data;
};

Bf16Matrix random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  Bf16Matrix m;
  m.data.resize(static_cast<size_t>(rows * cols));
  for (auto& v : m.data) v = float_to_bf16(dist(rng));
  m.w.dtype = DType::BF16, m.w.rows = rows, m.w.cols = cols;
  m.w.data = reinterpret_cast<const std::byte*>(m.data.data());
  return m;
}

std::vector<float> random_activations(int64_t tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  for (auto& v : x) v = dist(rng);
  return x;
}

// The activations the products multiply: rounded to bf16 (gemm_bf16) or as given (matvec_bf16_panels).
enum class Activations { kBf16, kFloat32 };

// Checks y (tokens × count at ldy, for rows first..) against the float64 sum of
// the products of the bf16 weights and the activations; returns how many outputs exceed the bound.
int64_t check_against_exact(const std::vector<float>& x, int64_t tokens, const Bf16Matrix& m, int64_t first,
                            int64_t count, const float* y, int64_t ldy, const char* what,
                            Activations activations = Activations::kBf16) {
  const int64_t cols = m.w.cols;
  const double u = std::ldexp(1.0, -24), gamma = cols * u / (1.0 - cols * u);
  int64_t failures = 0;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < count; ++i) {
      double sum = 0.0, magnitude = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const float xc = x[t * cols + c];
        const double p = static_cast<double>(bf16_to_float(m.data[(first + i) * cols + c])) *
                         (activations == Activations::kBf16 ? bf16_to_float(float_to_bf16(xc)) : xc);
        sum += p, magnitude += std::fabs(p);
      }
      const double error = std::fabs(y[t * ldy + i] - sum);
      if (error > gamma * magnitude && failures++ < 5)
        ADD_FAILURE() << what << ": token " << t << " row " << first + i << " of " << cols << " columns: " << y[t * ldy + i]
                      << " vs exact " << sum << ", bound " << gamma * magnitude;
    }
  return failures;
}

template <class Body>
void for_each_path(Body body) {
  for (bool avx512 : {true, false}) {
    allow_gemm_bf16_avx512(avx512);
    SCOPED_TRACE(gemm_bf16_kernel());
    body();
  }
  allow_gemm_bf16_avx512(true);
}

TEST(GemmBf16, RoundsActivationsToNearestEven) {
  const float tie_down = 1.0f + std::ldexp(1.0f, -8);      // halfway between 1 and 1 + 2^-7: to the even 1
  const float tie_up = 1.0f + 3 * std::ldexp(1.0f, -8);    // halfway between 1 + 2^-7 and 1 + 2^-6: to the even upper
  const float above = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);
  const std::vector<float> x = {tie_down, tie_up, above, -tie_down, 0.0f, std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN()};
  Bf16Activations a;
  a.round(x.data(), 1, static_cast<int64_t>(x.size()));
  ASSERT_EQ(a.ld, 8);
  EXPECT_EQ(a.values[0], 0x3F80);  // 1.0
  EXPECT_EQ(a.values[1], 0x3F82);  // 1 + 2^-6
  EXPECT_EQ(a.values[2], 0x3F81);  // 1 + 2^-7
  EXPECT_EQ(a.values[3], 0xBF80);
  EXPECT_EQ(a.values[4], 0x0000);
  EXPECT_EQ(a.values[5], 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_to_float(a.values[6])));
  EXPECT_EQ(a.values[7], 0);  // the pad of an odd row
}

TEST(GemmBf16, MatchesExactSumWithinFloat32BoundOnEveryPath) {
  std::vector<std::string> paths;
  for_each_path([&] {
    paths.push_back(gemm_bf16_kernel());
    // odd and single columns, a block boundary (2048 columns) crossed, partial panels and tiles
    for (int64_t cols : {1, 2, 3, 17, 64, 513, 2049})
      for (int64_t tokens : {1, 4, 7, 13})
        for (int64_t rows : {1, 31, 33, 70}) {
          SCOPED_TRACE(std::to_string(tokens) + " tokens × " + std::to_string(rows) + " rows × " + std::to_string(cols));
          const Bf16Matrix m = random_matrix(rows + 3, cols, static_cast<uint32_t>(cols * 131 + rows));
          const auto x = random_activations(tokens, cols, static_cast<uint32_t>(tokens + cols));
          Bf16Activations a;
          a.round(x.data(), tokens, cols);
          // rows 3.. of the matrix into a wider output whose extra columns must stay untouched
          const int64_t ldy = rows + 5;
          std::vector<float> y(static_cast<size_t>(tokens * ldy), -7.0f), ref(y.size(), -7.0f);
          gemm_bf16(a, m.w, 3, rows, y.data(), ldy);
          reference::gemm_bf16(a, m.w, 3, rows, ref.data(), ldy);
          EXPECT_EQ(check_against_exact(x, tokens, m, 3, rows, y.data(), ldy, "gemm_bf16"), 0);
          EXPECT_EQ(check_against_exact(x, tokens, m, 3, rows, ref.data(), ldy, "reference"), 0);
          for (int64_t t = 0; t < tokens; ++t)
            for (int64_t i = rows; i < ldy; ++i) ASSERT_EQ(y[t * ldy + i], -7.0f);
          if (std::string(gemm_bf16_kernel()) == "avx512-bf16") {
            // one float32 chain per output over the pairs in order, as the reference: the same bits
            // (vdpbf16ps flushes denormals, which these values are far from)
            EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
          }
        }
  });
  std::printf("[ gemm_bf16 ] paths checked:");
  for (const auto& p : paths) std::printf(" %s", p.c_str());
  std::printf("\n");
}

TEST(GemmBf16, MatmulTakesItForBf16Batches) {
  // matmul's threads split the rows in whole panels; every output as gemm_bf16 alone gives it
  const int64_t tokens = kGemmBf16MinTokens + 5, rows = 200, cols = 96;
  const Bf16Matrix m = random_matrix(rows, cols, 5);
  const auto x = random_activations(tokens, cols, 6);
  Bf16Activations a;
  a.round(x.data(), tokens, cols);
  std::vector<float> alone(static_cast<size_t>(tokens * rows)), threaded(alone.size());
  gemm_bf16(a, m.w, 0, rows, alone.data(), rows);
  const int threads = num_threads();
  set_num_threads(3);
  matmul(x.data(), tokens, m.w, threaded.data());
  set_num_threads(threads);
  EXPECT_EQ(std::memcmp(alone.data(), threaded.data(), alone.size() * sizeof(float)), 0);
  EXPECT_EQ(check_against_exact(x, tokens, m, 0, rows, threaded.data(), rows, "matmul"), 0);
}

// A bf16 matrix kept only as panels (WeightMatrix::products_read_panels):
// one-token products and steps below kGemmBf16MinTokens read the panels, in
// the order reference::matvec_bf16_panels spells out from the rows (float32
// activations, one chain over the even columns and one over the odd ones),
// the same bits whichever tokens share a call, and within float32 summation
// error of the exact sum. The rows are overwritten with NaN after packing, so
// a product that still read them would show it.
TEST(GemmBf16, ProductsOfFewTokensReadBf16PanelsInTheirOwnOrder) {
  if (!gemm_bf16_native()) GTEST_SKIP() << "no AVX512-BF16 kernel here: bf16 weights are never repacked";
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 64}, {45, 66}, {70, 33}, {96, 1100}}) {
    SCOPED_TRACE(std::to_string(rows) + " rows × " + std::to_string(cols));
    const Bf16Matrix m = random_matrix(rows, cols, static_cast<uint32_t>(rows + cols));
    Bf16Matrix poisoned = m;
    WeightMatrix w = m.w;
    w.data = reinterpret_cast<const std::byte*>(poisoned.data.data());
    AnonymousPages storage;
    repack_rows(w, storage);
    ASSERT_TRUE(w.products_read_panels());
    std::fill(poisoned.data.begin(), poisoned.data.end(), float_to_bf16(std::numeric_limits<float>::quiet_NaN()));
    const int64_t max_tokens = 31;
    const auto x = random_activations(max_tokens, cols, 5);
    std::vector<float> want(static_cast<size_t>(max_tokens * rows));
    reference::matvec_bf16_panels(x.data(), max_tokens, cols, m.w, 0, rows, want.data(), rows);
    ASSERT_EQ(check_against_exact(x, max_tokens, m, 0, rows, want.data(), rows, "reference", Activations::kFloat32), 0);
    // the kernel, any rows of any panel, 1..6 tokens at a time
    for (auto [first, count] : {std::pair<int64_t, int64_t>{0, rows}, {rows / 3, rows - rows / 3}, {rows - 1, 1}})
      for (int64_t tokens = 1; tokens <= 6; ++tokens) {
        std::vector<float> got(static_cast<size_t>(tokens * count), -1.0f);
        matvec_bf16_panels(x.data(), tokens, cols, w, first, count, got.data(), count);
        for (int64_t t = 0; t < tokens; ++t)
          ASSERT_EQ(std::memcmp(got.data() + t * count, want.data() + t * rows + first, count * sizeof(float)), 0)
              << tokens << " tokens, rows " << first << "+" << count << ", token " << t;
      }
    // matmul: one token (matvec_many's split of the rows), and steps of 2 to 31 tokens
    for (int64_t tokens : {1, 2, 3, 4, 7, 31}) {
      std::vector<float> got(static_cast<size_t>(tokens * rows), -1.0f);
      matmul(x.data(), tokens, w, got.data());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << tokens << " tokens";
    }
  }
}

// --repack (ops/repack.h): panels built once at load give the bits of those
// packed per call, across partial panels, odd columns and column blocks, in a
// row slice starting at a panel; a slice starting elsewhere packs per call.
TEST(GemmBf16, RepackedPanelsGiveTheBitsOfPanelsPackedPerCall) {
  for (int64_t cols : {3, 64, 2100}) {
    const int64_t rows = 70, tokens = 13;
    SCOPED_TRACE(std::to_string(rows) + " rows × " + std::to_string(cols));
    const Bf16Matrix m = random_matrix(rows, cols, static_cast<uint32_t>(cols));
    const auto x = random_activations(tokens, cols, 9);
    Bf16Activations a;
    a.round(x.data(), tokens, cols);
    WeightMatrix repacked = m.w;
    AnonymousPages storage;
    repack_rows(repacked, storage);
    if (std::string(gemm_bf16_kernel()) != "avx512-bf16") {  // the float32 path reads rows: nothing to repack
      EXPECT_EQ(repacked.panels, nullptr);
      EXPECT_EQ(repacked_bytes(m.w), 0u);
      continue;
    }
    ASSERT_NE(repacked.panels, nullptr);
    EXPECT_EQ(repacked_bytes(m.w), static_cast<size_t>(3 * 32 * ((cols + 1) / 2) * 4));
    use_gemm_bf16_for_prefill(false);  // (dsv2 serve) prompts take float32 products: no panels to build
    EXPECT_EQ(repacked_bytes(m.w), 0u);
    use_gemm_bf16_for_prefill(true);
    std::vector<float> per_call(static_cast<size_t>(tokens * rows)), got(per_call.size(), -1.0f);
    gemm_bf16(a, m.w, 0, rows, per_call.data(), rows);
    gemm_bf16(a, repacked, 0, rows, got.data(), rows);
    EXPECT_EQ(std::memcmp(per_call.data(), got.data(), got.size() * sizeof(float)), 0);
    EXPECT_EQ(check_against_exact(x, tokens, m, 0, rows, got.data(), rows, "repacked"), 0);
    // rows 32.. as a matrix of their own: its panels are the repacked ones from the second on
    const WeightMatrix slice = repacked.row_slice(32, rows - 32);
    EXPECT_EQ(slice.panels, repacked.panels + repacked.panel_bytes);
    std::vector<float> sliced(static_cast<size_t>(tokens * (rows - 32)));
    gemm_bf16(a, slice, 0, rows - 32, sliced.data(), rows - 32);
    for (int64_t t = 0; t < tokens; ++t)
      ASSERT_EQ(std::memcmp(sliced.data() + t * (rows - 32), per_call.data() + t * rows + 32, (rows - 32) * sizeof(float)), 0);
    EXPECT_EQ(repacked.row_slice(5, 40).panels, nullptr);
    // the float32 path ignores the panels
    allow_gemm_bf16_avx512(false);
    std::vector<float> float_path(got.size()), float_repacked(got.size());
    gemm_bf16(a, m.w, 0, rows, float_path.data(), rows);
    gemm_bf16(a, repacked, 0, rows, float_repacked.data(), rows);
    allow_gemm_bf16_avx512(true);
    EXPECT_EQ(std::memcmp(float_path.data(), float_repacked.data(), got.size() * sizeof(float)), 0);
  }
}

// q8, q4 and float8 weights widened to bf16 (gemm_bf16_takes): each weight
// is its dequantized value (the scalar reference dequantizers here) rounded
// to bf16, so the product must be, bit for bit, that of a bf16 matrix holding
// those values, on every path, packed per call or repacked.
struct QuantizedMatrix {
  WeightMatrix w;
  test::Quantized q8_q4;            // q8/q4 rows and scales (tests/quantized_matrix.h)
  std::vector<std::byte> fp8;       // float8 codes
  std::vector<float> fp8_scales;
  Bf16Matrix widened;  // the values gemm_bf16 must multiply
};

QuantizedMatrix random_quantized(DType type, bool f32_scales, int64_t rows, int64_t cols, uint32_t seed) {
  QuantizedMatrix m;
  if (type == DType::F8_E4M3) {  // e4m3 codes (no NaN) with a float32 scale per 16 rows × 64 columns
    std::mt19937 rng(seed);
    m.w.dtype = type, m.w.rows = rows, m.w.cols = cols;
    m.w.block_rows = 16, m.w.block_cols = 64;
    m.fp8_scales.resize(static_cast<size_t>((rows + 15) / 16 * ((cols + 63) / 64)));
    for (auto& s : m.fp8_scales) s = std::uniform_real_distribution<float>(1e-4f, 2e-3f)(rng);
    m.fp8.resize(static_cast<size_t>(rows * cols));
    for (auto& b : m.fp8) {
      auto code = static_cast<uint8_t>(rng() & 0xFF);
      if ((code & 0x7F) == 0x7F) code ^= 1;
      b = static_cast<std::byte>(code);
    }
    m.w.data = m.fp8.data(), m.w.scale_inv = m.fp8_scales.data();
  } else {
    m.q8_q4 = test::quantized(type, rows, cols, seed, false, f32_scales ? DType::F32 : DType::F16);
    m.w = m.q8_q4.w;
  }
  std::vector<float> widened(static_cast<size_t>(cols));
  m.widened.data.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(m.w.row_data(r));
    if (type == DType::I8)
      reference::dequantize_row_q8(reinterpret_cast<const int8_t*>(row), m.w.row_scales(r), cols, widened.data());
    else if (type == DType::U8)
      reference::dequantize_row_q4(row, m.w.row_scales(r), cols, widened.data());
    else
      reference::dequantize_row_fp8(row, m.w.fp8_row_scales(r), cols, m.w.block_cols, widened.data());
    for (int64_t c = 0; c < cols; ++c) m.widened.data[r * cols + c] = float_to_bf16(widened[c]);
  }
  m.widened.w.dtype = DType::BF16, m.widened.w.rows = rows, m.widened.w.cols = cols;
  m.widened.w.data = reinterpret_cast<const std::byte*>(m.widened.data.data());
  return m;
}

TEST(GemmBf16, WidensQ8Q4AndFloat8ToTheirValuesRoundedToBf16) {
  for (auto [type, f32_scales] : {std::pair{DType::I8, false}, std::pair{DType::I8, true}, std::pair{DType::U8, false},
                                  std::pair{DType::U8, true}, std::pair{DType::F8_E4M3, true}})
    for (int64_t cols : {32, 64, 544, 1408, 2112})  // (2112: across a block boundary)
      for (int64_t rows : {1, 31, 70}) {
        const int64_t tokens = 7;
        SCOPED_TRACE(dtype_name(type) + (f32_scales ? " f32 scales " : " ") + std::to_string(rows) + " rows × " +
                     std::to_string(cols));
        const QuantizedMatrix m = random_quantized(type, f32_scales, rows + 3, cols, static_cast<uint32_t>(cols + rows));
        ASSERT_TRUE(gemm_bf16_takes(m.w));
        const auto x = random_activations(tokens, cols, static_cast<uint32_t>(rows));
        Bf16Activations a;
        a.round(x.data(), tokens, cols);
        for_each_path([&] {
          std::vector<float> got(static_cast<size_t>(tokens * rows)), want(got.size()), ref(got.size());
          gemm_bf16(a, m.w, 3, rows, got.data(), rows);
          gemm_bf16(a, m.widened.w, 3, rows, want.data(), rows);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
          reference::gemm_bf16(a, m.w, 3, rows, ref.data(), rows);
          if (std::string(gemm_bf16_kernel()) == "avx512-bf16") {
            EXPECT_EQ(std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)), 0);
          }
          EXPECT_EQ(check_against_exact(x, tokens, m.widened, 3, rows, got.data(), rows, "widened"), 0);
        });
      }
  // float8 scale blocks that are not whole 32-column chunks, and other types, are not taken
  QuantizedMatrix odd = random_quantized(DType::F8_E4M3, true, 4, 64, 1);
  odd.w.block_cols = 48;
  EXPECT_FALSE(gemm_bf16_takes(odd.w));
  WeightMatrix f32;
  f32.dtype = DType::F32, f32.rows = 4, f32.cols = 64;
  EXPECT_FALSE(gemm_bf16_takes(f32));
}

// Which GEMM a prompt's product takes (matmul.h): widened bf16 for q8/q4 and
// float8 where this CPU has the kernel, unless the integer GEMM is asked for
// or bf16 activations are off; a small step keeps its old path.
TEST(GemmBf16, PromptGemmWidensQuantizedWeightsWhereTheKernelRuns) {
  const QuantizedMatrix q8 = random_quantized(DType::I8, false, 32, 64, 3);
  const QuantizedMatrix fp8 = random_quantized(DType::F8_E4M3, true, 32, 64, 4);
  const bool native = gemm_bf16_native();
  EXPECT_EQ(prompt_gemm(q8.w, kGemmBf16MinTokens), native ? PromptGemm::kBf16 : PromptGemm::kQ8);
  EXPECT_EQ(prompt_gemm(fp8.w, kGemmBf16MinTokens), native ? PromptGemm::kBf16 : PromptGemm::kFloat32);
  EXPECT_EQ(prompt_gemm(q8.widened.w, kGemmBf16MinTokens), PromptGemm::kBf16);
  EXPECT_EQ(prompt_gemm(q8.w, kGemmBf16MinTokens - 1), PromptGemm::kQ8);
  EXPECT_EQ(prompt_gemm(fp8.w, kGemmBf16MinTokens - 1), PromptGemm::kFloat32);
  use_gemm_q8_for_prompts(true);
  EXPECT_EQ(prompt_gemm(q8.w, kGemmBf16MinTokens), PromptGemm::kQ8);
  EXPECT_EQ(prompt_gemm(fp8.w, kGemmBf16MinTokens), native ? PromptGemm::kBf16 : PromptGemm::kFloat32);
  use_gemm_q8_for_prompts(false);
  use_gemm_bf16_for_prefill(false);
  EXPECT_EQ(prompt_gemm(q8.w, kGemmBf16MinTokens), PromptGemm::kQ8);
  EXPECT_EQ(prompt_gemm(fp8.w, kGemmBf16MinTokens), PromptGemm::kFloat32);
  EXPECT_EQ(prompt_gemm(q8.widened.w, kGemmBf16MinTokens), PromptGemm::kFloat32);
  use_gemm_bf16_for_prefill(true);
}

// Repacked widened panels give the bits of panels widened per call, and the
// integer GEMM, which has its own panel format, does not read them.
TEST(GemmBf16, RepacksWidenedPanelsThatOnlyItReads) {
  if (!gemm_bf16_native()) GTEST_SKIP() << "no AVX512-BF16 kernel here: q8/q4 prompts take the integer GEMM";
  const int64_t rows = 70, cols = 1408, tokens = 40;
  for (DType type : {DType::I8, DType::U8, DType::F8_E4M3}) {
    SCOPED_TRACE(dtype_name(type));
    const QuantizedMatrix m = random_quantized(type, type == DType::F8_E4M3, rows, cols, 8);
    WeightMatrix repacked = m.w;
    AnonymousPages storage;
    repack_rows(repacked, storage);
    ASSERT_NE(repacked.panels, nullptr);
    EXPECT_EQ(repacked.panel_format, PanelFormat::kBf16);
    EXPECT_EQ(repacked_bytes(m.w), static_cast<size_t>(3 * 32 * cols / 2 * 4));
    const auto x = random_activations(tokens, cols, 2);
    Bf16Activations a;
    a.round(x.data(), tokens, cols);
    std::vector<float> per_call(static_cast<size_t>(tokens * rows)), got(per_call.size());
    gemm_bf16(a, m.w, 0, rows, per_call.data(), rows);
    gemm_bf16(a, repacked, 0, rows, got.data(), rows);
    EXPECT_EQ(std::memcmp(per_call.data(), got.data(), got.size() * sizeof(float)), 0);
    const WeightMatrix slice = repacked.row_slice(32, rows - 32);
    EXPECT_EQ(slice.panel_format, PanelFormat::kBf16);
    if (type == DType::F8_E4M3) continue;  // (its slices start at a scale block, here 16 rows)
    EXPECT_EQ(repacked.row_slice(5, 40).panel_format, PanelFormat::kNone);
    Q8Activations q;
    q.quantize(x.data(), tokens, cols, 2);
    std::vector<float> integer(got.size()), integer_repacked(got.size());
    gemm_q8(q, m.w, 0, rows, integer.data(), rows);
    gemm_q8(q, repacked, 0, rows, integer_repacked.data(), rows);
    EXPECT_EQ(std::memcmp(integer.data(), integer_repacked.data(), got.size() * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace dsv2
