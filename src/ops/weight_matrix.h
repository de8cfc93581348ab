// A 2-D weight in the format it was stored in, used in place from the
// checkpoint's mapping: f32, bf16, f16, float8 e4m3 with per-block float32
// scales (DeepSeek-V3), or dsv2's block-quantized q8 (dtype I8) and q4 (dtype
// U8, two values per byte) with one float16 (older files: float32) scale per
// 32 values of a row (see ops/kernels.h). Kernels read it row by row; nothing here owns memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "ops/block_scales.h"

namespace dsv2 {

// dsv2's block-quantized weights: I8 is q8, U8 is q4 (ops/kernels.h).
inline bool is_block_quantized(DType dtype) { return dtype == DType::I8 || dtype == DType::U8; }
// Elements in one stored row of `cols` values: q4 packs two values per byte.
inline int64_t stored_columns(DType dtype, int64_t cols) { return dtype == DType::U8 ? cols / 2 : cols; }

// Rows per panel of the prompt GEMMs (gemm_bf16, gemm_q8), packed per call or at load.
constexpr int64_t kRepackRows = 32;
// Whose layout a matrix's repacked panels are in: gemm_bf16's (any weight type
// widened to bf16) or gemm_q8's (q8/q4 values and float32 scales).
enum class PanelFormat : uint8_t { kNone, kBf16, kQ8 };

struct WeightMatrix {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const std::byte* data = nullptr;
  // float8, q8, q4: w[r][c] = stored[r][c] * scale_inv[r / block_rows][c / block_cols]
  // (q8 and q4: block_rows 1, block_cols kQuantBlock), stored as scale_dtype:
  // F32, or for q8 and q4 also F16 (what dsv2 writes; BlockScales).
  const void* scale_inv = nullptr;
  DType scale_dtype = DType::F32;
  int64_t block_rows = 128, block_cols = 128;
  // Optionally, the same rows repacked once at load for the prompt GEMM of
  // this type (ops/repack.h, `--repack`): panel k holds rows [kRepackRows·k,
  // kRepackRows·(k + 1)) in the layout gemm_bf16 / gemm_q8 otherwise build per
  // call, panel_bytes each, in panel_format. nullptr: packed per call. The
  // rows above stay the weights every other kernel reads.
  const std::byte* panels = nullptr;
  size_t panel_bytes = 0;
  PanelFormat panel_format = PanelFormat::kNone;

  bool empty() const { return data == nullptr; }
  // Whether matmul, matvec_many and matvec_rows (ops/matmul.h) read this
  // matrix's panels, not its rows, for any number of tokens: bf16 rows
  // repacked into gemm_bf16's panels, which hold the same values, so decoding
  // needs no second copy (load-time repacking then releases the rows' pages,
  // ops/repack.h). Widened q8/q4/float8 panels are bigger than their rows:
  // one-token products keep reading those rows.
  bool products_read_panels() const {
    return panels && panel_format == PanelFormat::kBf16 && dtype == DType::BF16;
  }
  bool is_q4() const { return dtype == DType::U8; }
  bool is_q8() const { return dtype == DType::I8; }
  // Bytes of one stored row (q4 packs two values per byte).
  size_t row_bytes() const { return static_cast<size_t>(stored_columns(dtype, cols)) * dtype_size(dtype); }
  const std::byte* row_data(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
  // The repacked panel in `format` that starts at row r, or nullptr (not
  // repacked, in the other GEMM's format, or r not at a panel's start).
  const std::byte* repacked_panel(int64_t r, PanelFormat format) const {
    return panels && panel_format == format && r % kRepackRows == 0
               ? panels + static_cast<size_t>(r / kRepackRows) * panel_bytes
               : nullptr;
  }
  // Row r's block scales (q8 and q4 only).
  BlockScales row_scales(int64_t r) const {
    const BlockScales all = scale_dtype == DType::F16 ? BlockScales::half(static_cast<const uint16_t*>(scale_inv))
                                                      : BlockScales(static_cast<const float*>(scale_inv));
    return all + r * (cols / block_cols);
  }
  // float8: the scales of row r's row block, one per block_cols columns (the last block may be partial).
  const float* fp8_row_scales(int64_t r) const {
    return static_cast<const float*>(scale_inv) + (r / block_rows) * ((cols + block_cols - 1) / block_cols);
  }
  // Writes row r, converted to float32, into out[0, cols).
  void dequantize_row(int64_t r, float* out) const;
  // Row r as float32 if it is stored so (no copy), else nullptr.
  const float* f32_row(int64_t r) const {
    return dtype == DType::F32 ? reinterpret_cast<const float*>(data) + r * cols : nullptr;
  }
  size_t bytes() const;  // as stored, block scales included
  // Rows [first, first + count) as a matrix of their own (a view into the same
  // storage; repacked panels are kept when first is a multiple of kRepackRows). float8 rows share scales in blocks of block_rows rows, so there
  // `first` must be a multiple of block_rows.
  WeightMatrix row_slice(int64_t first, int64_t count) const;
  // Rows a slice should start at a multiple of (1 but for float8's row blocks).
  int64_t row_granule() const { return dtype == DType::F8_E4M3 && scale_inv ? block_rows : 1; }
};

// Bytes of a rows × cols matrix stored as `dtype`, block scales included
// (q8/q4: one float16 per kQuantBlock values of a row, as dsv2 writes them;
// float8: one float32 per fp8_block_rows × fp8_block_cols tile).
int64_t stored_matrix_bytes(DType dtype, int64_t rows, int64_t cols, int64_t fp8_block_rows = 128,
                            int64_t fp8_block_cols = 128);

// The inverse of WeightMatrix::dequantize_row for F32, BF16, I8 (q8) and U8
// (q4): one row of `cols` values encoded into `out` (stored_columns(dtype,
// cols) values) and, for q8/q4, its cols / kQuantBlock block scales into
// `scales`: float32, or float16 bits with the uint16_t overload. Conversion
// and load-time quantization store weight rows through it with float16
// scales, the quantized latent cache its rows with float32 ones.
void encode_row(DType dtype, const float* values, int64_t cols, std::byte* out, float* scales);
void encode_row(DType dtype, const float* values, int64_t cols, std::byte* out, uint16_t* f16_scales);

// A 1-D float32 weight (norm scales, biases): a view like WeightMatrix.
struct WeightVector {
  const float* values = nullptr;
  int64_t size = 0;

  const float* data() const { return values; }
  bool empty() const { return values == nullptr; }
};

}  // namespace dsv2
