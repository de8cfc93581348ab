#include "ops/weight_matrix.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "ops/kernels.h"

namespace dsv2 {

void WeightMatrix::dequantize_row(int64_t r, float* out) const {
  const std::byte* row = row_data(r);
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, row, sizeof(float) * cols);
      break;
    case DType::BF16:
      dequantize_row_bf16(reinterpret_cast<const uint16_t*>(row), cols, out);
      break;
    case DType::F16: {
      const auto* p = reinterpret_cast<const uint16_t*>(row);
      for (int64_t c = 0; c < cols; ++c) out[c] = f16_to_float(p[c]);
      break;
    }
    case DType::F8_E4M3:
      dequantize_row_fp8(reinterpret_cast<const uint8_t*>(row), fp8_row_scales(r), cols, block_cols, out);
      break;
    case DType::I8:
      dequantize_row_q8(reinterpret_cast<const int8_t*>(row), row_scales(r), cols, out);
      break;
    case DType::U8:
      dequantize_row_q4(reinterpret_cast<const uint8_t*>(row), row_scales(r), cols, out);
      break;
    default:
      std::fill(out, out + cols, 0.0f);  // rejected at load time; never reached
  }
}

namespace {

template <class S>
void encode_row_with(DType dtype, const float* values, int64_t cols, std::byte* out, S* scales) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, values, sizeof(float) * static_cast<size_t>(cols));
      break;
    case DType::BF16: {
      auto* p = reinterpret_cast<uint16_t*>(out);
      for (int64_t c = 0; c < cols; ++c) p[c] = float_to_bf16(values[c]);
      break;
    }
    case DType::I8:
      quantize_row_q8(values, cols, reinterpret_cast<int8_t*>(out), scales);
      break;
    case DType::U8:
      quantize_row_q4(values, cols, reinterpret_cast<uint8_t*>(out), scales);
      break;
    default:
      throw Error("encode_row: rows are not stored as " + dtype_name(dtype));
  }
}

}  // namespace

void encode_row(DType dtype, const float* values, int64_t cols, std::byte* out, float* scales) {
  encode_row_with(dtype, values, cols, out, scales);
}
void encode_row(DType dtype, const float* values, int64_t cols, std::byte* out, uint16_t* f16_scales) {
  encode_row_with(dtype, values, cols, out, f16_scales);
}

WeightMatrix WeightMatrix::row_slice(int64_t first, int64_t count) const {
  require(first >= 0 && count >= 0 && first + count <= rows, "row_slice: rows outside the matrix");
  require(first % row_granule() == 0, "row_slice: a float8 slice must start at a scale block");
  WeightMatrix m = *this;
  m.rows = count;
  if (count == 0) {
    m.data = nullptr, m.scale_inv = nullptr, m.panels = nullptr, m.panel_format = PanelFormat::kNone;
    return m;
  }
  m.data = row_data(first);
  m.panels = repacked_panel(first, panel_format);
  if (!m.panels) m.panel_format = PanelFormat::kNone;
  if (scale_inv) m.scale_inv = is_block_quantized(dtype) ? row_scales(first).data : fp8_row_scales(first);
  return m;
}

int64_t stored_matrix_bytes(DType dtype, int64_t rows, int64_t cols, int64_t fp8_block_rows, int64_t fp8_block_cols) {
  int64_t bytes = rows * stored_columns(dtype, cols) * static_cast<int64_t>(dtype_size(dtype));
  if (is_block_quantized(dtype)) bytes += rows * (cols / kQuantBlock) * 2;
  if (dtype == DType::F8_E4M3)
    bytes += ((rows + fp8_block_rows - 1) / fp8_block_rows) * ((cols + fp8_block_cols - 1) / fp8_block_cols) * 4;
  return bytes;
}

size_t WeightMatrix::bytes() const {
  size_t n = static_cast<size_t>(rows) * row_bytes();
  if (scale_inv) {  // the block scales are read too
    const int64_t block_grid = ((rows + block_rows - 1) / block_rows) * ((cols + block_cols - 1) / block_cols);
    n += static_cast<size_t>(block_grid) * dtype_size(scale_dtype);
  }
  return n;
}

}  // namespace dsv2
