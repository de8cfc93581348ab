// A random q8/q4 matrix for the GEMM tests: rows of normal values encoded by
// encode_row, as dsv2 quantizes weights, with float16 block scales (what dsv2
// writes) unless scale_dtype is F32 (older files).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "ops/kernels.h"
#include "ops/weight_matrix.h"

namespace dsv2::test {

struct Quantized {
  WeightMatrix w;
  std::vector<std::byte> data;
  std::vector<float> scales;
  std::vector<uint16_t> f16_scales;
};

// extremes: every value at ±max of its block, so q8 rows hold ±127 and q4 rows -7/7 (and -8 on rounding).
inline Quantized quantized(DType dtype, int64_t rows, int64_t cols, uint32_t seed, bool extremes = false,
                           DType scale_dtype = DType::F16) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Quantized q;
  q.data.resize(static_cast<size_t>(rows * stored_columns(dtype, cols)));
  const bool f16 = scale_dtype == DType::F16;
  if (f16)
    q.f16_scales.resize(static_cast<size_t>(rows * cols / kQuantBlock));
  else
    q.scales.resize(static_cast<size_t>(rows * cols / kQuantBlock));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) row[c] = extremes ? (dist(rng) < 0 ? -1.0f : 1.0f) * (1.0f + (c % 7 == 0)) : dist(rng);
    std::byte* out = q.data.data() + r * stored_columns(dtype, cols);
    if (f16)
      encode_row(dtype, row.data(), cols, out, q.f16_scales.data() + r * (cols / kQuantBlock));
    else
      encode_row(dtype, row.data(), cols, out, q.scales.data() + r * (cols / kQuantBlock));
  }
  q.w.dtype = dtype, q.w.rows = rows, q.w.cols = cols, q.w.data = q.data.data();
  q.w.scale_inv = f16 ? static_cast<const void*>(q.f16_scales.data()) : q.scales.data();
  q.w.scale_dtype = scale_dtype;
  q.w.block_rows = 1, q.w.block_cols = kQuantBlock;
  return q;
}

}  // namespace dsv2::test
