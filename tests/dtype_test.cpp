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

TEST(DType, Names) {
  EXPECT_EQ(dtype_from_name("F8_E4M3"), DType::F8_E4M3);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_FALSE(dtype_from_name("bf16").has_value());
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
}

}  // namespace
}  // namespace dsv2
