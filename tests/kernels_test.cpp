// Every row kernel, on every SIMD target compiled in and supported by this CPU
// (down to the portable EMU128/SCALAR ones a plain x86-64 machine falls back
// to), against its scalar reference. Tolerances follow from float32
// accumulation: |error| <= n * eps * Σ|x·w| (eps = 2^-24), plus a small floor.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ops/elementwise.h"
#include "ops/kernels.h"

namespace dsv2 {
namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

double abs_dot(const std::vector<float>& x, const std::vector<float>& w) {
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += std::fabs(static_cast<double>(x[i]) * w[i]);
  return s;
}

double tolerance(int64_t n, double abs_sum) { return static_cast<double>(n) * std::ldexp(1.0, -24) * abs_sum + 1e-6; }

// Runs `body` once per SIMD target, with the dispatcher forced to it.
template <class Body>
void for_each_target(Body body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    ASSERT_EQ(simd_target(), hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);  // back to what the CPU supports
}

TEST(Kernels, DotF32AndBF16MatchScalarReference) {
  for_each_target([] {
    for (int64_t n : {1, 3, 8, 31, 64, 100, 513, 2048}) {
      const auto x = random_floats(n, 1), w = random_floats(n, 2);
      std::vector<uint16_t> w16(w.size());
      std::vector<float> w16_as_float(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        w16[i] = float_to_bf16(w[i]);
        w16_as_float[i] = bf16_to_float(w16[i]);
      }
      EXPECT_NEAR(dot_f32(x.data(), w.data(), n), reference::dot_f32(x.data(), w.data(), n), tolerance(n, abs_dot(x, w)))
          << n;
      EXPECT_NEAR(dot_bf16(x.data(), w16.data(), n), reference::dot_bf16(x.data(), w16.data(), n),
                  tolerance(n, abs_dot(x, w16_as_float)))
          << n;
    }
  });
}

TEST(Kernels, DotQ8AndQ4MatchScalarReference) {
  for_each_target([] {
    for (int64_t n : {32, 64, 96, 2048, 10944}) {
      const auto x = random_floats(n, 3), w = random_floats(n, 4, 0.05f);
      std::vector<int8_t> q8(static_cast<size_t>(n));
      std::vector<uint8_t> q4(static_cast<size_t>(n / 2));
      std::vector<float> s8(static_cast<size_t>(n / kQuantBlock)), s4(s8.size()), w8(w.size()), w4(w.size());
      quantize_row_q8(w.data(), n, q8.data(), s8.data());
      quantize_row_q4(w.data(), n, q4.data(), s4.data());
      dequantize_row_q8(q8.data(), s8.data(), n, w8.data());
      dequantize_row_q4(q4.data(), s4.data(), n, w4.data());
      EXPECT_NEAR(dot_q8(x.data(), q8.data(), s8.data(), n), reference::dot_q8(x.data(), q8.data(), s8.data(), n),
                  tolerance(n, abs_dot(x, w8)))
          << n;
      EXPECT_NEAR(dot_q4(x.data(), q4.data(), s4.data(), n), reference::dot_q4(x.data(), q4.data(), s4.data(), n),
                  tolerance(n, abs_dot(x, w4)))
          << n;
      // The dequantized row is what the kernels multiply by.
      EXPECT_NEAR(reference::dot_f32(x.data(), w8.data(), n), reference::dot_q8(x.data(), q8.data(), s8.data(), n),
                  tolerance(n, abs_dot(x, w8)));
      EXPECT_NEAR(reference::dot_f32(x.data(), w4.data(), n), reference::dot_q4(x.data(), q4.data(), s4.data(), n),
                  tolerance(n, abs_dot(x, w4)));
    }
  });
}

TEST(Kernels, DequantizationMatchesScalarReferenceExactly) {
  for_each_target([] {
    for (int64_t n : {32, 64, 2048, 10944}) {
      const auto w = random_floats(n, 6);
      std::vector<int8_t> q8(n);
      std::vector<uint8_t> q4(n / 2);
      std::vector<uint16_t> h(n);
      std::vector<float> s8(n / kQuantBlock), s4(n / kQuantBlock), got(n), want(n);
      quantize_row_q8(w.data(), n, q8.data(), s8.data());
      quantize_row_q4(w.data(), n, q4.data(), s4.data());
      dequantize_row_q8(q8.data(), s8.data(), n, got.data());
      reference::dequantize_row_q8(q8.data(), s8.data(), n, want.data());
      EXPECT_EQ(got, want) << n;  // one multiplication per value: no rounding freedom
      dequantize_row_q4(q4.data(), s4.data(), n, got.data());
      reference::dequantize_row_q4(q4.data(), s4.data(), n, want.data());
      EXPECT_EQ(got, want) << n;
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(w[i]);
      dequantize_row_bf16(h.data(), n - 3, got.data());  // a tail shorter than a vector too
      for (int64_t i = 0; i < n - 3; ++i) ASSERT_EQ(got[i], bf16_to_float(h[i])) << i;
    }
  });
}

TEST(Kernels, IntegerDotsMatchScalarReference) {
  for_each_target([] {
    // blocks: 1, 2, 3, 64, 44 (a V2-Lite expert's width: q4 on VNNI takes 8 at a time, then 2 pairs), 342
    for (int64_t n : {32, 64, 96, 2048, 1408, 10944}) {
      const auto x = random_floats(n, 7), w = random_floats(n, 8, 0.05f);
      std::vector<int8_t> xq(n), q8(n);
      std::vector<uint8_t> q4(n / 2);
      std::vector<float> xs(n / kQuantBlock), s8(n / kQuantBlock), s4(n / kQuantBlock), xd(n), w8(n), w4(n);
      quantize_activation_q8(x.data(), n, xq.data(), xs.data());
      quantize_row_q8(w.data(), n, q8.data(), s8.data());
      quantize_row_q4(w.data(), n, q4.data(), s4.data());
      reference::dequantize_row_q8(xq.data(), xs.data(), n, xd.data());
      reference::dequantize_row_q8(q8.data(), s8.data(), n, w8.data());
      reference::dequantize_row_q4(q4.data(), s4.data(), n, w4.data());
      // The activation is quantized to within half a step per value.
      for (int64_t i = 0; i < n; ++i) ASSERT_LE(std::fabs(xd[i] - x[i]), 0.5f * xs[i / kQuantBlock] * 1.0001f) << i;
      // Integer block sums are exact; only the float scaling and summation round.
      EXPECT_NEAR(dot_q8_q8(xq.data(), xs.data(), q8.data(), s8.data(), n),
                  reference::dot_q8_q8(xq.data(), xs.data(), q8.data(), s8.data(), n), tolerance(n, abs_dot(xd, w8)));
      EXPECT_NEAR(dot_q8_q4(xq.data(), xs.data(), q4.data(), s4.data(), n),
                  reference::dot_q8_q4(xq.data(), xs.data(), q4.data(), s4.data(), n), tolerance(n, abs_dot(xd, w4)));
    }
  });
}

// matvec_q8: a matrix of rows, each against the one quantized activation, gives
// what the scalar reference gives row by row.
TEST(Kernels, MatVecQ8MatchesScalarReferenceRowByRow) {
  // 3 blocks (only the AVX2 kernel's one-block tail) and 11 (a group of eight, then the tail).
  for_each_target([] {
    for (const int64_t n : {96, 352}) {
      const int64_t rows = 5;
      const auto x = random_floats(n, 31), w = random_floats(n * rows, 32, 0.05f);
      std::vector<int8_t> xq(n), q8(n * rows);
      std::vector<uint8_t> q4(n * rows / 2);
      std::vector<float> xs(n / kQuantBlock), s8(rows * n / kQuantBlock), s4(rows * n / kQuantBlock), y8(rows), y4(rows);
      quantize_activation_q8(x.data(), n, xq.data(), xs.data());
      for (int64_t r = 0; r < rows; ++r) {
        quantize_row_q8(w.data() + r * n, n, q8.data() + r * n, s8.data() + r * n / kQuantBlock);
        quantize_row_q4(w.data() + r * n, n, q4.data() + r * n / 2, s4.data() + r * n / kQuantBlock);
      }
      matvec_q8(xq.data(), xs.data(), reinterpret_cast<const std::byte*>(q8.data()), s8.data(), n, rows, false, y8.data());
      matvec_q8(xq.data(), xs.data(), reinterpret_cast<const std::byte*>(q4.data()), s4.data(), n, rows, true, y4.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float* s8r = s8.data() + r * n / kQuantBlock;
        const float* s4r = s4.data() + r * n / kQuantBlock;
        EXPECT_NEAR(y8[r], reference::dot_q8_q8(xq.data(), xs.data(), q8.data() + r * n, s8r, n), 1e-4f) << r;
        EXPECT_NEAR(y4[r], reference::dot_q8_q4(xq.data(), xs.data(), q4.data() + r * n / 2, s4r, n), 1e-4f) << r;
      }
    }
  });
}

TEST(Kernels, QuantizationErrorIsAtMostHalfAStep) {
  const int64_t n = 4096;
  const auto w = random_floats(n, 5);
  std::vector<int8_t> q8(n);
  std::vector<uint8_t> q4(n / 2);
  std::vector<float> s8(n / kQuantBlock), s4(n / kQuantBlock), w8(n), w4(n);
  quantize_row_q8(w.data(), n, q8.data(), s8.data());
  quantize_row_q4(w.data(), n, q4.data(), s4.data());
  dequantize_row_q8(q8.data(), s8.data(), n, w8.data());
  dequantize_row_q4(q4.data(), s4.data(), n, w4.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / kQuantBlock;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(w[b * kQuantBlock + j]));
    EXPECT_FLOAT_EQ(s8[b], amax / 127.0f);
    EXPECT_FLOAT_EQ(s4[b], amax / 7.0f);
    EXPECT_LE(std::fabs(w[i] - w8[i]), 0.5f * s8[b] * (1 + 1e-5f)) << i;
    EXPECT_LE(std::fabs(w[i] - w4[i]), 0.5f * s4[b] * (1 + 1e-5f) + (w[i] < -7.5f * s4[b] ? s4[b] : 0.0f)) << i;
  }
}

// The two-term activation of the integer GEMM: the same q and scales as the one-term
// quantizer, and a residual that leaves at most half a step of scale/256 (a whole one
// where it was clamped at ±127), on every target.
TEST(Kernels, ActivationResidualLeavesHalfAStepOf1Over256) {
  for_each_target([] {
    const int64_t n = 4096;
    const auto x = random_floats(n, 9, 4.0f);
    std::vector<int8_t> q(n), q_alone(n), residual(n);
    std::vector<float> scales(n / kQuantBlock), scales_alone(n / kQuantBlock);
    quantize_activation_q8_residual(x.data(), n, q.data(), residual.data(), scales.data());
    quantize_activation_q8(x.data(), n, q_alone.data(), scales_alone.data());
    EXPECT_EQ(q, q_alone);
    EXPECT_EQ(scales, scales_alone);
    int clamped = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double s = scales[i / kQuantBlock], left = x[i] / s - q[i];
      ASSERT_GE(residual[i], -127);
      const bool at_clamp = std::fabs(left * 256.0) > 126.9;
      clamped += at_clamp;
      EXPECT_LE(std::fabs(left - residual[i] / 256.0), (at_clamp ? 1.0 : 0.5) / 256.0 + 1e-5) << i;
    }
    EXPECT_LT(clamped, n / 50);
  });
}

TEST(Kernels, Q4NibbleLayout) {
  // Values 0..15 of a block go to low nibbles, 16..31 to high nibbles, as q + 8.
  std::vector<float> w(kQuantBlock, 0.0f);
  w[0] = 7.0f;    // the block maximum: scale 1, q = 7 -> nibble 15
  w[1] = -3.0f;   // q = -3 -> nibble 5
  w[16] = -7.0f;  // q = -7 -> nibble 1, high half of byte 0
  w[17] = 2.0f;   // q = 2 -> nibble 10, high half of byte 1
  std::vector<uint8_t> q(kQuantBlock / 2);
  float scale = 0.0f;
  quantize_row_q4(w.data(), kQuantBlock, q.data(), &scale);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(q[0], 0x1F);
  EXPECT_EQ(q[1], 0xA5);
  EXPECT_EQ(q[2], 0x88);  // zeros
}

TEST(Kernels, AllZeroBlockHasZeroScale) {
  std::vector<float> w(kQuantBlock, 0.0f);
  std::vector<int8_t> q(kQuantBlock, 1);
  float scale = 1.0f;
  quantize_row_q8(w.data(), kQuantBlock, q.data(), &scale);
  EXPECT_EQ(scale, 0.0f);
  for (int8_t v : q) EXPECT_EQ(v, 0);
}

// float16 block scales (what dsv2 writes since issue 17): every q8/q4 kernel, on
// every target, gives bit for bit what it gives with the same scales widened to
// float32 (the scale load is all that differs), the scalar references likewise,
// and both stay within float32 rounding of the reference.
TEST(Kernels, F16ScalesGiveExactlyWhatTheirFloat32ValuesGive) {
  for_each_target([] {
    for (const int64_t n : {32, 96, 352, 2048}) {  // 1 and 3 blocks (tails only), 11 (eight and a tail), 64
      SCOPED_TRACE(n);
      const int64_t rows = 3, blocks = n / kQuantBlock;
      const auto x = random_floats(n, 41), w = random_floats(n * rows, 42, 0.05f);
      std::vector<int8_t> xq(n), q8(n * rows);
      std::vector<uint8_t> q4(n * rows / 2);
      std::vector<float> xs(blocks), f8(rows * blocks), f4(rows * blocks);
      std::vector<uint16_t> h8(rows * blocks), h4(rows * blocks);
      quantize_activation_q8(x.data(), n, xq.data(), xs.data());
      for (int64_t r = 0; r < rows; ++r) {
        quantize_row_q8(w.data() + r * n, n, q8.data() + r * n, h8.data() + r * blocks);
        quantize_row_q4(w.data() + r * n, n, q4.data() + r * n / 2, h4.data() + r * blocks);
      }
      for (size_t b = 0; b < h8.size(); ++b) f8[b] = f16_to_float(h8[b]), f4[b] = f16_to_float(h4[b]);
      const BlockScales s8 = BlockScales::half(h8.data()), s4 = BlockScales::half(h4.data());
      std::vector<float> w8(n), w4(n);
      reference::dequantize_row_q8(q8.data(), f8.data(), n, w8.data());
      reference::dequantize_row_q4(q4.data(), f4.data(), n, w4.data());

      EXPECT_EQ(dot_q8(x.data(), q8.data(), s8, n), dot_q8(x.data(), q8.data(), f8.data(), n));
      EXPECT_EQ(dot_q4(x.data(), q4.data(), s4, n), dot_q4(x.data(), q4.data(), f4.data(), n));
      EXPECT_EQ(dot_q8_q8(xq.data(), xs.data(), q8.data(), s8, n), dot_q8_q8(xq.data(), xs.data(), q8.data(), f8.data(), n));
      EXPECT_EQ(dot_q8_q4(xq.data(), xs.data(), q4.data(), s4, n), dot_q8_q4(xq.data(), xs.data(), q4.data(), f4.data(), n));
      EXPECT_EQ(reference::dot_q8(x.data(), q8.data(), s8, n), reference::dot_q8(x.data(), q8.data(), f8.data(), n));
      EXPECT_EQ(reference::dot_q4(x.data(), q4.data(), s4, n), reference::dot_q4(x.data(), q4.data(), f4.data(), n));
      EXPECT_EQ(reference::dot_q8_q8(xq.data(), xs.data(), q8.data(), s8, n),
                reference::dot_q8_q8(xq.data(), xs.data(), q8.data(), f8.data(), n));
      EXPECT_EQ(reference::dot_q8_q4(xq.data(), xs.data(), q4.data(), s4, n),
                reference::dot_q8_q4(xq.data(), xs.data(), q4.data(), f4.data(), n));
      EXPECT_NEAR(dot_q8(x.data(), q8.data(), s8, n), reference::dot_q8(x.data(), q8.data(), f8.data(), n),
                  tolerance(n, abs_dot(x, w8)));
      EXPECT_NEAR(dot_q4(x.data(), q4.data(), s4, n), reference::dot_q4(x.data(), q4.data(), f4.data(), n),
                  tolerance(n, abs_dot(x, w4)));

      std::vector<float> y16(rows), y32(rows);
      for (const bool q4_rows : {false, true}) {
        const auto* data = q4_rows ? reinterpret_cast<const std::byte*>(q4.data()) : reinterpret_cast<const std::byte*>(q8.data());
        matvec_q8(xq.data(), xs.data(), data, q4_rows ? s4 : s8, n, rows, q4_rows, y16.data());
        matvec_q8(xq.data(), xs.data(), data, q4_rows ? f4.data() : f8.data(), n, rows, q4_rows, y32.data());
        EXPECT_EQ(y16, y32) << (q4_rows ? "q4" : "q8");
        for (int64_t r = 0; r < rows; ++r) {
          const float want = q4_rows ? reference::dot_q8_q4(xq.data(), xs.data(), q4.data() + r * n / 2, s4 + r * blocks, n)
                                     : reference::dot_q8_q8(xq.data(), xs.data(), q8.data() + r * n, s8 + r * blocks, n);
          EXPECT_NEAR(y16[r], want, 1e-4f) << r;
        }
      }

      // Dequantization: exactly scale · q, the scale read from its float16 bits.
      std::vector<float> got(n), want(n);
      dequantize_row_q8(q8.data(), s8, n, got.data());
      reference::dequantize_row_q8(q8.data(), s8, n, want.data());
      EXPECT_EQ(got, w8);
      EXPECT_EQ(want, w8);
      dequantize_row_q4(q4.data(), s4, n, got.data());
      reference::dequantize_row_q4(q4.data(), s4, n, want.data());
      EXPECT_EQ(got, w4);
      EXPECT_EQ(want, w4);
    }
  });
}

// The float16 scale is float16(max|w| / 127) (q4: / 7), q is computed against it,
// so decoding gives exactly scale · q, within half a step of the original.
TEST(Kernels, F16ScaleQuantizationDecodesToScaleTimesQ) {
  const int64_t n = 4096;
  const auto w = random_floats(n, 5, 0.03f);
  std::vector<int8_t> q8(n);
  std::vector<uint8_t> q4(n / 2);
  std::vector<uint16_t> h8(n / kQuantBlock), h4(n / kQuantBlock);
  std::vector<float> w8(n), w4(n);
  quantize_row_q8(w.data(), n, q8.data(), h8.data());
  quantize_row_q4(w.data(), n, q4.data(), h4.data());
  dequantize_row_q8(q8.data(), BlockScales::half(h8.data()), n, w8.data());
  dequantize_row_q4(q4.data(), BlockScales::half(h4.data()), n, w4.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / kQuantBlock;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(w[b * kQuantBlock + j]));
    ASSERT_EQ(h8[b], float_to_f16(amax / 127.0f)) << b;
    ASSERT_EQ(h4[b], float_to_f16(amax / 7.0f)) << b;
    const float s8 = f16_to_float(h8[b]), s4 = f16_to_float(h4[b]);
    const uint8_t byte = q4[b * kQuantBlock / 2 + i % (kQuantBlock / 2)];
    const int v4 = ((i % kQuantBlock) < kQuantBlock / 2 ? byte & 0xF : byte >> 4) - 8;
    EXPECT_EQ(w8[i], s8 * static_cast<float>(q8[i])) << i;
    EXPECT_EQ(w4[i], s4 * static_cast<float>(v4)) << i;
    EXPECT_EQ(q8[i], static_cast<int8_t>(std::clamp(std::lround(w[i] / s8), -127L, 127L))) << i;
    EXPECT_LE(std::fabs(w[i] - w8[i]), 0.5f * s8 * (1 + 1e-5f)) << i;
    EXPECT_LE(std::fabs(w[i] - w4[i]), 0.5f * s4 * (1 + 1e-5f) + (w[i] < -7.5f * s4 ? s4 : 0.0f)) << i;
  }
}

// Scales outside float16's normal range: a block whose max|w| / 127 would be a
// float16 subnormal (or round to 0) keeps the smallest normal scale 2^-14; one
// past the largest finite half keeps 65504 and its values saturate at ±127
// (q4: -8..7). q stays in range and decoding stays exact scale · q.
TEST(Kernels, F16ScalesStayWithinFloat16Range) {
  auto quantize_block = [](const std::vector<float>& w, std::vector<int8_t>& q8, uint16_t& h8, std::vector<uint8_t>& q4,
                           uint16_t& h4) {
    q8.assign(kQuantBlock, 0), q4.assign(kQuantBlock / 2, 0);
    quantize_row_q8(w.data(), kQuantBlock, q8.data(), &h8);
    quantize_row_q4(w.data(), kQuantBlock, q4.data(), &h4);
  };
  std::vector<int8_t> q8;
  std::vector<uint8_t> q4;
  uint16_t h8 = 0, h4 = 0;
  for (const float amax : {1e-3f, 1e-6f, 1e-12f}) {  // amax / 127: 7.9e-6 (subnormal) ... 7.9e-15 (rounds to 0)
    SCOPED_TRACE(amax);
    std::vector<float> w(kQuantBlock);
    for (int64_t j = 0; j < kQuantBlock; ++j) w[j] = amax * static_cast<float>(j - 16) / 16.0f;
    quantize_block(w, q8, h8, q4, h4);
    EXPECT_EQ(h8, 0x0400);  // 2^-14
    EXPECT_EQ(f16_to_float(h8), 0x1p-14f);
    if (amax < 7 * 0x1p-14f) {
      EXPECT_EQ(h4, 0x0400);
    }
    std::vector<float> d8(kQuantBlock), d4(kQuantBlock);
    dequantize_row_q8(q8.data(), BlockScales::half(&h8), kQuantBlock, d8.data());
    dequantize_row_q4(q4.data(), BlockScales::half(&h4), kQuantBlock, d4.data());
    for (int64_t j = 0; j < kQuantBlock; ++j) {
      EXPECT_LE(std::abs(q8[j]), 127);
      EXPECT_EQ(d8[j], 0x1p-14f * q8[j]);
      EXPECT_LE(std::fabs(d8[j] - w[j]), 0x1p-15f) << j;  // half a step of 2^-14
      EXPECT_LE(std::fabs(d4[j] - w[j]), 0.5f * f16_to_float(h4) * 1.0001f) << j;
    }
  }
  // max|w| = 127 · 2^-14 exactly: the smallest normal is the scale itself, no clamp.
  std::vector<float> w(kQuantBlock, 0.0f);
  w[3] = 127 * 0x1p-14f, w[4] = -0x1p-14f;
  quantize_block(w, q8, h8, q4, h4);
  EXPECT_EQ(h8, 0x0400);
  EXPECT_EQ(q8[3], 127);
  EXPECT_EQ(q8[4], -1);
  // Past float16: 1e9 / 127 > 65504.
  w.assign(kQuantBlock, 0.0f);
  w[0] = 1e9f, w[1] = -1e9f, w[2] = 5e6f, w[17] = -5e6f;
  quantize_block(w, q8, h8, q4, h4);
  EXPECT_EQ(h8, 0x7bff);  // 65504
  EXPECT_EQ(h4, 0x7bff);
  EXPECT_EQ(q8[0], 127);
  EXPECT_EQ(q8[1], -127);
  EXPECT_EQ(q8[2], 76);  // 5e6 / 65504 = 76.3
  EXPECT_EQ(q8[17], -76);
  EXPECT_EQ(q4[0], 0x0F | (0x08 << 4));  // value 0 at 7 (nibble 15), value 16 at 0 (nibble 8)
  EXPECT_EQ(q4[1], 0x00 | (0x00 << 4));  // values 1 and 17 clamped at -8 (nibble 0)
  // An all-zero block: scale 0, every q 0.
  w.assign(kQuantBlock, 0.0f);
  quantize_block(w, q8, h8, q4, h4);
  EXPECT_EQ(h8, 0);
  EXPECT_EQ(h4, 0);
  for (int8_t v : q8) EXPECT_EQ(v, 0);
  for (uint8_t v : q4) EXPECT_EQ(v, 0x88);
}

// float8 e4m3 rows with a scale per block of 128 columns (the last partial).
TEST(Kernels, Fp8DotAndDequantizationMatchScalarReference) {
  for_each_target([] {
    for (int64_t n : {1, 9, 128, 300, 1000}) {
      const auto x = random_floats(n, 21);
      std::mt19937 rng(22);
      std::vector<uint8_t> w(static_cast<size_t>(n));
      for (auto& code : w) {
        code = static_cast<uint8_t>(rng() & 0xff);
        if ((code & 0x7f) == 0x7f) code ^= 1;  // no NaN codes in weights
      }
      const auto scales = random_floats((n + 127) / 128, 23);
      std::vector<float> got(n), want(n);
      dequantize_row_fp8(w.data(), scales.data(), n, 128, got.data());
      reference::dequantize_row_fp8(w.data(), scales.data(), n, 128, want.data());
      EXPECT_EQ(got, want) << n;  // exact: decoding is exact, one rounding in the scale product
      EXPECT_NEAR(dot_fp8(x.data(), w.data(), scales.data(), n, 128),
                  reference::dot_fp8(x.data(), w.data(), scales.data(), n, 128), tolerance(n, abs_dot(x, want)))
          << n;
    }
  });
}

// quantize_rows_fp8: a 128 × 128 tile's scale is its max|w| / 448; each value
// decodes to the nearest e4m3 step of w / scale.
TEST(Kernels, Fp8TileQuantization) {
  const int64_t rows = 70, n = 200;  // one partial row block, a full and a partial column block
  const auto w = random_floats(rows * n, 24);
  std::vector<uint8_t> q(w.size());
  std::vector<float> scales(2);
  quantize_rows_fp8(w.data(), rows, n, 128, q.data(), scales.data());
  for (int64_t b = 0; b < 2; ++b) {
    float amax = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = b * 128; c < std::min<int64_t>(n, (b + 1) * 128); ++c) amax = std::max(amax, std::fabs(w[r * n + c]));
    EXPECT_FLOAT_EQ(scales[b], amax / 448.0f);
  }
  for (int64_t i = 0; i < rows * n; ++i) {
    const float scale = scales[(i % n) / 128], v = fp8_e4m3_to_float(q[i]) * scale;
    // e4m3 keeps 3 mantissa bits: relative error <= 2^-4, or half the subnormal step.
    EXPECT_LE(std::fabs(v - w[i]), std::max(std::fabs(w[i]) * 0.0625f, scale * 0x1p-10f) * 1.0001f) << i;
  }
}

// RMSNorm, softmax, exp, SiLU and RoPE (ops/elementwise.h) against their
// double-precision scalar references: float32 rounding of a few operations per
// value (exp is 1 ulp), so a relative tolerance of a few 1e-6 plus a floor.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-6f) << what << " at " << i << " of " << got.size();
}

TEST(Kernels, ElementwiseMatchScalarReference) {
  for_each_target([] {
    for (int64_t n : {1, 2, 7, 16, 64, 100, 513}) {
      const auto x = random_floats(n, 11, 3.0f), w = random_floats(n, 12), up = random_floats(n, 13);
      std::vector<float> got(n), want(n);
      rmsnorm(x.data(), w.data(), 1e-6f, 1, n, got.data());
      reference::rmsnorm(x.data(), w.data(), 1e-6f, 1, n, want.data());
      expect_close(got, want, 1e-5f, "rmsnorm");

      got = x, want = x;
      softmax(got.data(), n);
      reference::softmax(want.data(), n);
      expect_close(got, want, 1e-5f, "softmax");

      got = x, want = x;
      const float sum = exp_shifted_sum(got.data(), n, 1.5f), want_sum = reference::exp_shifted_sum(want.data(), n, 1.5f);
      expect_close(got, want, 4e-6f, "exp_shifted_sum");
      EXPECT_NEAR(sum, want_sum, 1e-5f * want_sum);
      EXPECT_EQ(max_value(x.data(), n), *std::max_element(x.begin(), x.end()));
      double squares = 0.0;
      for (float e : x) squares += static_cast<double>(e) * e;
      EXPECT_NEAR(sum_of_squares(x.data(), n), squares, 1e-6 * squares);

      auto big = x;  // SiLU far into both tails stays finite and exact
      if (n > 2) big[0] = -200.0f, big[1] = 200.0f;
      got = big, want = big;
      silu_mul(got.data(), up.data(), n);
      reference::silu_mul(want.data(), up.data(), n);
      expect_close(got, want, 1e-5f, "silu_mul");
      std::vector<float> kept(n);  // the form training uses: gate kept, product written elsewhere
      silu_mul_to(big.data(), up.data(), kept.data(), n);
      expect_close(kept, want, 1e-5f, "silu_mul_to");

      const auto dh = random_floats(n, 15, 1.0f);
      std::vector<float> dg(n), du(n), want_dg(n), want_du(n);
      silu_mul_backward(big.data(), up.data(), dh.data(), n, dg.data(), du.data());
      reference::silu_mul_backward(big.data(), up.data(), dh.data(), n, want_dg.data(), want_du.data());
      expect_close(dg, want_dg, 1e-5f, "silu_mul_backward dgate");
      expect_close(du, want_du, 1e-5f, "silu_mul_backward dup");

      // AdamW, a later step (moments already non-zero): SIMD against the scalar form.
      const AdamWStep later{0.99f, 0.9f, 0.95f, 3e-3f, 0.4f, 1e-8f};
      auto p_simd = x, m_simd = random_floats(n, 16, 0.1f), v_simd = random_floats(n, 17, 0.01f);
      for (auto& e : v_simd) e = std::abs(e);
      auto p_ref = p_simd, m_ref = m_simd, v_ref = v_simd;
      adamw_update(p_simd.data(), dh.data(), m_simd.data(), v_simd.data(), n, later);
      reference::adamw_update(p_ref.data(), dh.data(), m_ref.data(), v_ref.data(), n, later);
      expect_close(m_simd, m_ref, 1e-6f, "adamw m");
      expect_close(v_simd, v_ref, 1e-6f, "adamw v");
      expect_close(p_simd, p_ref, 1e-6f, "adamw p");

      if (n % 2 == 0) {
        const auto angles = random_floats(n / 2, 14, 2.0f);
        std::vector<float> cos(n / 2), sin(n / 2);
        for (int64_t i = 0; i < n / 2; ++i) cos[i] = std::cos(angles[i]), sin[i] = std::sin(angles[i]);
        got = x, want = x;
        rope_rotate(got.data(), cos.data(), sin.data(), n);
        reference::rope_rotate(want.data(), cos.data(), sin.data(), n);
        expect_close(got, want, 1e-5f, "rope_rotate");
        got = x, want = x;
        rope_rotate_half_split(got.data(), cos.data(), sin.data(), n);
        reference::rope_rotate_half_split(want.data(), cos.data(), sin.data(), n);
        expect_close(got, want, 1e-5f, "rope_rotate_half_split");
      }
    }
    // Masked scores: exp(-inf) is 0, the rest of the row unaffected.
    std::vector<float> masked = {0.5f, -std::numeric_limits<float>::infinity(), 1.0f};
    const float s = exp_shifted_sum(masked.data(), 3, 1.0f);
    EXPECT_EQ(masked[1], 0.0f);
    EXPECT_NEAR(s, std::exp(-0.5f) + 1.0f, 1e-6f);
  });
}

// AdamW's first step from zero moments moves every weight by lr·sign(g) (after
// weight decay): m = (1−β1)g, v = (1−β2)g², so m̂/√v̂ = g/|g|. Worked out by hand,
// not from the code.
TEST(Kernels, AdamWFirstStepMovesByLearningRate) {
  for_each_target([] {
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.95f;
    const AdamWStep first{1.0f - lr * 0.1f, b1, b2, lr / (1.0f - b1), std::sqrt(1.0f - b2), 1e-8f};
    const int64_t n = 37;  // a vector body and a scalar tail
    const auto g = random_floats(n, 21, 2.0f);
    std::vector<float> p(n, 0.5f), m(n, 0.0f), v(n, 0.0f);
    adamw_update(p.data(), g.data(), m.data(), v.data(), n, first);
    for (int64_t i = 0; i < n; ++i) {
      const float want = 0.5f * (1.0f - lr * 0.1f) - lr * (g[i] > 0 ? 1.0f : -1.0f);
      EXPECT_NEAR(p[i], want, 1e-6f) << i;
      EXPECT_NEAR(m[i], 0.1f * g[i], 1e-6f) << i;
      EXPECT_NEAR(v[i], 0.05f * g[i] * g[i], 1e-6f) << i;
    }
  });
}

}  // namespace
}  // namespace dsv2
