// Row kernels: the dot product of a float32 activation vector with one weight
// row in each storage format dsv2 reads. Batch-1 decoding is a sequence of
// such dot products over every weight a token uses, so these loops decide how
// close decoding gets to the memory-bandwidth roofline.
//
// Each kernel is compiled for several SIMD targets with Highway (SSE2 ... AVX2,
// AVX-512) and the best one the CPU supports is picked at run time, so a plain
// x86-64 build still uses AVX2 where it exists. A scalar reference of each sits
// in `reference`; tests compare every compiled target against it.
//
// Block-quantized formats (dsv2's own, documented in docs/FORMATS.md): a row is
// split into blocks of kQuantBlock consecutive values, each with one scale,
// float16 or float32 (BlockScales, ops/block_scales.h); value = scale * q.
//   q8: q is int8 in [-127, 127], one byte per value.
//   q4: q is in [-8, 7], stored as q + 8 in a nibble; in each block, byte i
//       holds value i in its low nibble and value i + 16 in its high nibble.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ops/block_scales.h"

namespace dsv2 {

constexpr int64_t kQuantBlock = 32;

float dot_f32(const float* x, const float* w, int64_t n);
float dot_bf16(const float* x, const uint16_t* w, int64_t n);
// n must be a multiple of kQuantBlock; scales has n / kQuantBlock entries.
float dot_q8(const float* x, const int8_t* q, BlockScales scales, int64_t n);
float dot_q4(const float* x, const uint8_t* q, BlockScales scales, int64_t n);

// float8 e4m3fn weights (DeepSeek-V3's release format): one float32 scale per
// `block` consecutive values of the row (its row block's entries of
// weight_scale_inv); the last block may be shorter. The two NaN codes are not
// expected in weights (the SIMD decoder reads them as ±480).
float dot_fp8(const float* x, const uint8_t* w, const float* scales, int64_t n, int64_t block);
void dequantize_row_fp8(const uint8_t* w, const float* scales, int64_t n, int64_t block, float* out);
// Quantizes `rows` (<= block) rows of n float32 values to fp8 with one scale
// per block of columns: scale = max|w| / 448 over the rows × block tile, so the
// largest value maps to e4m3's largest finite one (DeepSeek-V3's recipe).
void quantize_rows_fp8(const float* w, int64_t rows, int64_t n, int64_t block, uint8_t* q, float* scales);

// Integer kernels for one-token matmuls: the activation row is first
// quantized like a q8 weight row (quantize_row_q8: xq, xs), then each weight
// row costs one integer dot per block. This is what llama.cpp does; it adds
// the activation's 8-bit rounding (<= half a step per value) to the result.
float dot_q8_q8(const int8_t* xq, const float* xs, const int8_t* wq, BlockScales ws, int64_t n);
float dot_q8_q4(const int8_t* xq, const float* xs, const uint8_t* wq, BlockScales ws, int64_t n);
// y[r] = dot_q8_q8 (or, with q4, dot_q8_q4) of the activation with each of
// `rows` consecutive weight rows starting at w, their scales from ws (n / 32
// per row): the batch-1 matmul of a block-quantized matrix, one call per range.
void matvec_q8(const int8_t* xq, const float* xs, const std::byte* w, BlockScales ws, int64_t n, int64_t rows, bool q4,
               float* y);
// The activation side (SIMD): scale = max|x| / 127, q = nearest-even(x · 127 / max|x|).
void quantize_activation_q8(const float* x, int64_t n, int8_t* q, float* scales);
// The same q and scales, and the residual of each value in steps of scale/256,
// nearest((x/scale - q)·256) clamped to [-127, 127]: x ≈ scale·(q + residual/256)
// (the two-term activations of the integer GEMM, ops/gemm_q8.h).
void quantize_activation_q8_residual(const float* x, int64_t n, int8_t* q, int8_t* residual, float* scales);

// Quantizes one row (n a multiple of kQuantBlock): scale = max|w| / 127 (q8)
// or max|w| / 7 (q4), stored as float32 or (the uint16_t overloads) float16,
// q = round(w / scale) against the scale as stored, clamped to the format's
// range, so that scale · q is exactly the value a kernel reads. A float16
// scale is rounded to nearest and kept within [2^-14, 65504], float16's
// smallest normal and largest finite values: a block with max|w| below
// 127·2^-14 (q8; 7·2^-14 for q4) keeps the step 2^-14, an absolute error no
// larger than that of the blocks just above it, and one past 127·65504
// saturates at ±127 steps (no real weight is that large); an all-zero block has
// scale 0. kQuantScaleF16Min/Max name the bounds.
constexpr float kQuantScaleF16Min = 0x1p-14f, kQuantScaleF16Max = 65504.0f;
void quantize_row_q8(const float* w, int64_t n, int8_t* q, float* scales);
void quantize_row_q4(const float* w, int64_t n, uint8_t* q, float* scales);
void quantize_row_q8(const float* w, int64_t n, int8_t* q, uint16_t* f16_scales);
void quantize_row_q4(const float* w, int64_t n, uint8_t* q, uint16_t* f16_scales);
// Rows converted to float32 (SIMD).
void dequantize_row_bf16(const uint16_t* w, int64_t n, float* out);
void dequantize_row_q8(const int8_t* q, BlockScales scales, int64_t n, float* out);
void dequantize_row_q4(const uint8_t* q, BlockScales scales, int64_t n, float* out);

// The SIMD target the dispatcher uses now ("AVX2", "AVX3", "SSE4", "EMU128", ...).
std::string simd_target();
// Whether this CPU runs the AVX512-VNNI kernels (q4 rows here, gemm_q8's tile):
// avx512vnni with avx512bw and avx512vl. Highway's AVX3 target does not imply
// VNNI, so those kernels carry the ISA themselves and run where this says so.
bool cpu_has_avx512_vnni();

namespace reference {
float dot_f32(const float* x, const float* w, int64_t n);
float dot_bf16(const float* x, const uint16_t* w, int64_t n);
float dot_q8(const float* x, const int8_t* q, BlockScales scales, int64_t n);
float dot_q4(const float* x, const uint8_t* q, BlockScales scales, int64_t n);
float dot_q8_q8(const int8_t* xq, const float* xs, const int8_t* wq, BlockScales ws, int64_t n);
float dot_q8_q4(const int8_t* xq, const float* xs, const uint8_t* wq, BlockScales ws, int64_t n);
void dequantize_row_q8(const int8_t* q, BlockScales scales, int64_t n, float* out);
void dequantize_row_q4(const uint8_t* q, BlockScales scales, int64_t n, float* out);
float dot_fp8(const float* x, const uint8_t* w, const float* scales, int64_t n, int64_t block);
void dequantize_row_fp8(const uint8_t* w, const float* scales, int64_t n, int64_t block, float* out);
}  // namespace reference

}  // namespace dsv2
