// bfloat16 GEMM for a prompt's products: y = x·Wᵀ for a batch of tokens
// with the activations rounded to bfloat16 (round to nearest even) once per
// product and float32 accumulation. This is what llama.cpp and ik_llama.cpp
// do for bf16 weights (their activations are converted to the weights'
// vec_dot type, bf16) and what `vdpbf16ps` consumes: a bf16 × bf16 product is
// exact in float32, so the only errors are the activations' rounding (2^-9
// relative) and the float32 summation. Where the CPU has AVX512-BF16, q8, q4
// and float8 weights take it too, widened to bf16 as the panels are packed
// (gemm_bf16_takes): about as close to the bf16 model as the integer GEMM's
// two activation terms (dsv2-mini q8: mean KL 0.000056 against 0.000054) and
// faster (docs/PERFORMANCE.md).
//
// x86 with AVX512-BF16: weights repacked per call into panels of 32 rows where
// each pair of consecutive columns of a row sits next to the same pair of the
// other rows ([pair][row][2 values]); one 64-byte load holds a pair of 16 rows
// and `vdpbf16ps` against a token's pair broadcast to all lanes adds both
// products into 16 per-row float32 sums. Each output is one float32 chain over
// the column pairs in order. Elsewhere: the same bf16-rounded activations
// through the float32 path (rows converted to float32, OpenBLAS sgemm), so the
// result differs between CPUs only by the float32 summation order.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/weight_matrix.h"

namespace dsv2 {

// A batch of activation rows rounded to bfloat16, each row padded with a zero
// to an even length (the kernel reads column pairs).
struct Bf16Activations {
  int64_t tokens = 0, cols = 0, ld = 0;  // ld: cols rounded up to even
  std::vector<uint16_t> values;          // [tokens][ld]
  // Parallel over tokens.
  void round(const float* x, int64_t tokens, int64_t cols);
};

// The weights gemm_bf16 multiplies: bf16, and q8, q4 and float8 e4m3 (with
// its scales in blocks of a multiple of 32 columns) widened to bf16 as they
// are packed into panels: each weight is its dequantized float32 value (scale
// · q, WeightMatrix::dequantize_row) rounded to bf16 (a float32 denormal to
// zero, as vdpbf16ps takes it anyway), a relative error of at
// most 2^-9 on top of the format's own quantization step (q8's is ~1/254 of a
// block's largest value).
bool gemm_bf16_takes(const WeightMatrix& w);
// Whether this CPU runs the AVX512-BF16 kernel (else the float32 path).
bool gemm_bf16_native();

// y[t·ldy + i] = x_t · row(first + i) for i < count of a matrix gemm_bf16 takes,
// on the calling thread (callers split rows over threads in multiples of kGemmBf16PanelRows).
void gemm_bf16(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy);

constexpr int64_t kGemmBf16PanelRows = kRepackRows;

// Load-time repacking (ops/repack.h): the bytes of one panel of w as the
// kernel of this CPU reads it ([column pair][kRepackRows rows][2 values], all
// of a row's pairs), or 0 where gemm_bf16 reads rows (no AVX512-BF16).
size_t gemm_bf16_panel_bytes(const WeightMatrix& w);
// Panel `index` of w (rows past w.rows zero) into out[0, gemm_bf16_panel_bytes(w)).
void pack_gemm_bf16_panel(const WeightMatrix& w, int64_t index, std::byte* out);

// Products with few tokens (decoding, a step below kGemmBf16MinTokens) on a
// bf16 matrix whose panels replaced its rows (WeightMatrix::
// products_read_panels): y[t·ldy + i] = x_t · row(first + i) for t < tokens
// and i < count, the float32 activations x_t = x + t·ldx not rounded, on the
// calling thread; any rows, whole panels or not. Each output is two float32
// chains over the column pairs in order, one over the even columns and one
// over the odd ones, added at the end: the same bits whichever tokens share a
// call, so a token of a verification step gets what decoding it alone gives.
void matvec_bf16_panels(const float* x, int64_t tokens, int64_t ldx, const WeightMatrix& w, int64_t first,
                        int64_t count, float* y, int64_t ldy);

// Which path gemm_bf16 runs on this CPU: "avx512-bf16" or "float32-sgemm".
const char* gemm_bf16_kernel();
// Tests: forbid (false) or allow (true, the default where the CPU has it) the AVX512-BF16 kernel.
void allow_gemm_bf16_avx512(bool allowed);

// Whether matmul runs bf16 prefill through gemm_bf16 (the default) or through
// the float32 path with float32 activations, as before. The tests that hold
// the model's arithmetic to float32 transformers logits at 1e-4 turn it off
// (on their tiny random models bf16 activations moved logits by up to 15%),
// and so does dsv2 serve: whether a product has >= 32 rows depends there on
// which requests share a step, and a request's tokens must not.
void use_gemm_bf16_for_prefill(bool enabled);
bool gemm_bf16_for_prefill();

namespace reference {
// One float32 chain per output over the column pairs in order, each pair's
// odd column first (vdpbf16ps's order): acc = fma(w[2j+1], x[2j+1], acc);
// acc = fma(w[2j], x[2j], acc).
void gemm_bf16(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy);
// From the rows: even = fma(w[2j], x[2j], even) and odd = fma(w[2j+1], x[2j+1], odd) over j in order; even + odd.
void matvec_bf16_panels(const float* x, int64_t tokens, int64_t ldx, const WeightMatrix& w, int64_t first,
                        int64_t count, float* y, int64_t ldy);
}  // namespace reference

}  // namespace dsv2
