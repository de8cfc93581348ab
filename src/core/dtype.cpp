#include "core/dtype.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace dsv2 {

namespace {
struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr std::array<DTypeInfo, 11> kDTypes{{
    {DType::F64, "F64", 8},     {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},     {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},       {DType::BOOL, "BOOL", 1},
}};

std::array<float, 256> make_fp8_table() {
  std::array<float, 256> table{};
  for (int bits = 0; bits < 256; ++bits) {
    const int sign = bits >> 7, exponent = (bits >> 3) & 0xf, mantissa = bits & 7;
    float value;
    if (exponent == 0xf && mantissa == 7) {
      value = std::numeric_limits<float>::quiet_NaN();
    } else if (exponent == 0) {
      value = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);  // subnormal
    } else {
      value = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
    }
    table[bits] = sign ? -value : value;
  }
  return table;
}
const std::array<float, 256> kFp8Table = make_fp8_table();
}  // namespace

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& info : kDTypes)
    if (name == info.name) return info.dtype;
  return std::nullopt;
}

std::string dtype_name(DType dtype) {
  for (const auto& info : kDTypes)
    if (info.dtype == dtype) return info.name;
  return "?";
}

size_t dtype_size(DType dtype) {
  for (const auto& info : kDTypes)
    if (info.dtype == dtype) return info.size;
  return 0;
}

bool dtype_is_float(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 ||
         dtype == DType::BF16 || dtype == DType::F8_E4M3;
}

uint16_t float_to_f16(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // 65520 and up round to infinity
  if (a < 0x38800000u) {                        // below 2^-14: subnormal steps of 2^-24 (1024 steps is 2^-14, code 0x400)
    float magnitude;
    std::memcpy(&magnitude, &a, sizeof magnitude);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(magnitude * 0x1p24f)));
  }
  const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);  // the 23-bit mantissa to 10 bits, ties to even
  return static_cast<uint16_t>(sign | ((rounded >> 13) - (112u << 10)));
}

float fp8_e4m3_to_float(uint8_t bits) { return kFp8Table[bits]; }

uint8_t float_to_fp8_e4m3(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  const auto sign = static_cast<uint8_t>((u >> 24) & 0x80);
  const float a = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7f;
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0x1p-6f)  // subnormal range: steps of 2^-9; rounding up to 8 steps gives 0x08 = 2^-6, the smallest normal
    return sign | static_cast<uint8_t>(std::nearbyint(a * 0x1p9f));
  std::memcpy(&u, &a, sizeof u);
  u += 0x7ffffu + ((u >> 20) & 1u);  // round the 23-bit mantissa to 3 bits, ties to even
  const int exponent = static_cast<int>(u >> 23) - 127 + 7;
  const uint32_t mantissa = (u >> 20) & 7u;
  if (exponent > 15 || (exponent == 15 && mantissa == 7)) return sign | 0x7e;  // rounded past 448
  return sign | static_cast<uint8_t>((exponent << 3) | mantissa);
}

}  // namespace dsv2
