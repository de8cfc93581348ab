// A 2-D weight in the dtype it was stored in (f32, bf16, f16, or float8 e4m3
// with per-block float32 scales), used in place from the checkpoint's mapping.
// Kernels read it row by row; nothing here owns memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace dsv2 {

struct WeightMatrix {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const std::byte* data = nullptr;
  // float8 only: w[r][c] = fp8[r][c] * scale_inv[r / block_rows][c / block_cols]
  const float* scale_inv = nullptr;
  int64_t block_rows = 128, block_cols = 128;

  bool empty() const { return data == nullptr; }
  // Writes row r, converted to float32, into out[0, cols).
  void dequantize_row(int64_t r, float* out) const;
  // Row r as float32 if it is stored so (no copy), else nullptr.
  const float* f32_row(int64_t r) const {
    return dtype == DType::F32 ? reinterpret_cast<const float*>(data) + r * cols : nullptr;
  }
  size_t bytes() const;  // as stored, block scales included
};

// A 1-D float32 weight (norm scales, biases): a view like WeightMatrix.
struct WeightVector {
  const float* values = nullptr;
  int64_t size = 0;

  const float* data() const { return values; }
  bool empty() const { return values == nullptr; }
};

}  // namespace dsv2
