// Element types of stored tensors and their conversions to float.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace dsv2 {

enum class DType { F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL };

// Safetensors spelling ("F32", "BF16", "F8_E4M3", ...); nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);
std::string dtype_name(DType dtype);
size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);

inline float bf16_to_float(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, as torch does when casting float32 to bfloat16.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE float16 (binary16) to float32: exact for every code, subnormals included.
inline float f16_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu, mantissa = bits & 0x3ffu;
  uint32_t u;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24, a normal float32
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    std::memcpy(&u, &magnitude, sizeof u);
    u |= sign;
  } else if (exponent == 0x1f) {  // infinity, NaN
    u = sign | 0x7f800000u | (mantissa << 13);
  } else {  // rebias the exponent from 15 to 127
    u = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The nearest float16 (ties to even), as vcvtps2ph and torch round: magnitudes
// from 65520 on become infinity, those below 2^-14 float16 subnormals.
uint16_t float_to_f16(float value);
// float8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinities,
// 0x7f/0xff are NaN. Decoded through a 256-entry table.
float fp8_e4m3_to_float(uint8_t bits);
// The nearest e4m3fn value (ties to even); magnitudes past 448, the largest
// finite one, saturate to ±448; NaN stays NaN.
uint8_t float_to_fp8_e4m3(float value);

}  // namespace dsv2
