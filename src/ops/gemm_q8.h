// Integer GEMM for dsv2's block-quantized weights (q8, q4; ops/kernels.h):
// y = x·Wᵀ for a batch of tokens (prefill, the experts' products of a prompt)
// with the activations quantized to int8 per block of kQuantBlock, as the
// one-token path already does. Each (row, token, block) product is an exact
// int32 sum; only the float32 scale accumulation rounds, in a fixed order:
//   acc = 0; for each block b:
//     acc = fma(float(256·Σ_j wq·xq + Σ_j wq·xr) · (xs[t][b] / 256), ws[r][b], acc)
// (xq, xr: the two int8 terms of the activation, see Q8Activations; with one
// term xr is 0, and the kernels' float(Σ_j wq·xq)·xs[t][b] is the same float)
// so every SIMD target gives the same bits as reference::gemm_q8.
//
// x86: AVX512-VNNI `vpdpbusd` where the CPU has it (weights as the unsigned
// operand: q8 biased by +128, q4's stored nibbles as they are; the bias is
// taken off exactly by starting each block's int32 sum at -bias·Σ_j xq);
// `vpmaddubsw` on AVX2 (and AVX-512 without VNNI); a portable loop elsewhere.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/weight_matrix.h"

namespace dsv2 {

// A batch of activation rows quantized for gemm_q8 in two int8 terms per
// value: x ≈ s·(q + residual/256), q and s as quantize_activation_q8 gives them
// for one token, the residual what q leaves, in steps of s/256. With q alone
// (what the one-token path and llama.cpp's Q8_0 activations do) the q8
// prefill logits of dsv2-mini drifted twice as far from bf16 (mean KL 0.00010
// against 0.00005 with float32 activations); the second term brings the
// activation error down to s/512 for twice the integer multiply-adds.
//
// With terms = 1 the residual is left out (empty vectors): the activations are
// those of the one-token path and llama.cpp's, for half the multiply-adds.
struct Q8Activations {
  int64_t tokens = 0, cols = 0;
  int terms = 2;
  std::vector<int8_t> q;               // [tokens][cols]
  std::vector<int8_t> residual;        // [tokens][cols] (terms 2)
  std::vector<float> scales;           // [tokens][cols / kQuantBlock]
  std::vector<int32_t> sums;           // [tokens][cols / kQuantBlock]: Σ_j q over the block
  std::vector<int32_t> residual_sums;  // likewise Σ_j residual (terms 2)
  // cols must be a multiple of kQuantBlock; terms 1 or 2. Parallel over tokens.
  void quantize(const float* x, int64_t tokens, int64_t cols, int terms = 2);
};

// How many int8 terms matmul gives each activation value of a q8/q4 prefill
// product (process-wide; 2 unless set): 2 keeps the prefill logits as close to
// the bf16 model as float32 activations do (dsv2-mini's q8 mean KL 0.00005,
// 0.00010 with one term), 1 is what llama.cpp does and halves the GEMM's work.
void set_gemm_q8_activation_terms(int terms);
int gemm_q8_activation_terms();

// y[t·ldy + i] = x_t · row(first + i) for i < count, on the calling thread
// (callers split rows over threads in multiples of kGemmQ8PanelRows).
void gemm_q8(const Q8Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy);

// Rows repacked together into one register-blocked panel.
constexpr int64_t kGemmQ8PanelRows = kRepackRows;

// Load-time repacking (ops/repack.h): the bytes of one panel of q8/q4 weights
// as this CPU's kernel reads it ([block][quad][row][4 bytes] values, then
// float32 scales [block][row]), or 0 where gemm_q8 reads rows (the portable
// kernel) or w is not q8/q4.
size_t gemm_q8_panel_bytes(const WeightMatrix& w);
// Panel `index` of w (rows past w.rows zero) into out[0, gemm_q8_panel_bytes(w)).
void pack_gemm_q8_panel(const WeightMatrix& w, int64_t index, std::byte* out);

// Which inner kernel gemm_q8 runs on this CPU at the dispatched target:
// "avx512-vnni", "avx2-maddubs" or "portable".
const char* gemm_q8_kernel();
// Tests: forbid (false) or allow (true, the default where the CPU has it) the VNNI kernel.
void allow_gemm_q8_vnni(bool allowed);

namespace reference {
void gemm_q8(const Q8Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy);
}

}  // namespace dsv2
