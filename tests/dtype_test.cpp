// Element conversions against values computed by torch (fp8) and by the IEEE
// formats' definitions (bf16, f16).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "test_util.h"

namespace dsv2 {
namespace {

TEST(DType, Fp8E4M3MatchesTorchForAll256Codes) {
  const auto expected = test::read_f32(test::fixture("fp8_e4m3_values.f32"));
  ASSERT_EQ(expected.size(), 256u);
  for (int code = 0; code < 256; ++code) {
    const float got = fp8_e4m3_to_float(static_cast<uint8_t>(code));
    if (std::isnan(expected[code]))
      EXPECT_TRUE(std::isnan(got)) << "code " << code;
    else
      EXPECT_EQ(got, expected[code]) << "code " << code;
  }
}

// Encoding: every finite code round-trips; any float goes to the nearest value
// of torch's table (ties to the even code), past 448 saturates.
TEST(DType, FloatToFp8E4M3IsNearestTorchValue) {
  const auto table = test::read_f32(test::fixture("fp8_e4m3_values.f32"));
  for (int code = 0; code < 256; ++code) {
    if (!std::isnan(table[code])) {
      EXPECT_EQ(float_to_fp8_e4m3(table[code]), code == 0x80 ? 0x80 : code) << code;
    }
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? -1.0f : 1.0f);
    const int got = float_to_fp8_e4m3(x);
    const float err = std::fabs(table[got] - x);
    for (int code = 0; code < 256; ++code) {
      if (std::isnan(table[code]) || std::fabs(x) > 448.0f) continue;
      const float other = std::fabs(table[code] - x);
      ASSERT_LE(err, other) << x << " -> " << table[got] << " but " << table[code] << " is nearer";
      if (other == err && code != got && table[code] != table[got]) {
        ASSERT_EQ(got & 1, 0) << x << ": tie not to even";
      }
    }
    if (std::fabs(x) > 448.0f) {
      EXPECT_EQ(table[got], x > 0 ? 448.0f : -448.0f) << x;
    }
  }
  EXPECT_EQ(float_to_fp8_e4m3(1e6f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-1e-12f), 0x80);
  EXPECT_EQ(float_to_fp8_e4m3(0x1p-10f), 0x00);  // half the smallest subnormal: tie to even (0)
  EXPECT_EQ(float_to_fp8_e4m3(3.0f * 0x1p-10f), 0x02);  // 1.5 steps: tie to even (2)
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(float_to_fp8_e4m3(std::nanf("")))));
}

TEST(DType, Bf16) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies exactly between two bf16 values: ties round to even (1.0).
  EXPECT_EQ(float_to_bf16(1.00390625f), 0x3f80);
  // 1 + 3·2^-8 lies between mantissas 1 (odd) and 2 (even): rounds to 2.
  EXPECT_EQ(float_to_bf16(1.01171875f), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(DType, F16) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_float(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
}

// Every finite float16 code decodes to its definition, (-1)^s · 2^(e-15) · (1 + m/1024)
// (subnormal: 2^-14 · m/1024), and float_to_f16 gives it back; values between two codes
// round to the nearer, ties to the even code, as vcvtps2ph and torch do.
TEST(DType, F16AllCodesAndRounding) {
  auto defined = [](uint32_t code) {
    const uint32_t e = (code >> 10) & 0x1f, m = code & 0x3ff;
    const double magnitude = e == 0 ? std::ldexp(static_cast<double>(m), -24) : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
    return (code & 0x8000) ? -magnitude : magnitude;
  };
  for (uint32_t code = 0; code < 0x10000; ++code) {
    if (((code >> 10) & 0x1f) == 0x1f) continue;  // infinities, NaN
    const auto h = static_cast<uint16_t>(code);
    ASSERT_EQ(static_cast<double>(f16_to_float(h)), defined(code)) << std::hex << code;
    ASSERT_EQ(float_to_f16(f16_to_float(h)), h) << std::hex << code;
    const uint32_t next = code + 1;
    if ((code & 0x7fff) == 0x7bff) continue;  // the largest finite: its midpoint is below
    const double low = defined(code), high = defined(next), mid = 0.5 * (low + high);
    const uint16_t even = (code & 1) ? static_cast<uint16_t>(next) : h;
    ASSERT_EQ(float_to_f16(static_cast<float>(mid)), even) << std::hex << code;
    ASSERT_EQ(float_to_f16(std::nextafter(static_cast<float>(mid), static_cast<float>(low))), h) << std::hex << code;
    ASSERT_EQ(float_to_f16(std::nextafter(static_cast<float>(mid), static_cast<float>(high))), static_cast<uint16_t>(next))
        << std::hex << code;
  }
  EXPECT_EQ(float_to_f16(65519.99f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);  // the tie above 65504 goes to infinity (even)
  EXPECT_EQ(float_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(float_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(float_to_f16(0x1p-26f), 0x0000);  // below half the smallest subnormal
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(NAN))));
}

TEST(DType, Names) {
  EXPECT_EQ(dtype_from_name("F8_E4M3"), DType::F8_E4M3);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_FALSE(dtype_from_name("bf16").has_value());
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
}

}  // namespace
}  // namespace dsv2
