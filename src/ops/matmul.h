// y = x·Wᵀ (the nn.Linear convention): x is [tokens, W.cols], y is [tokens, W.rows].
#pragma once

#include <cstdint>

#include "ops/weight_matrix.h"

namespace dsv2 {

// step_rows: the rows of the forward step this product is part of, when more
// than `tokens` (a routed expert's share of a prompt); the bf16 GEMM's
// threshold (kGemmBf16MinTokens) is on them, so that a prompt's experts with a
// few tokens each take it as the prompt's other products do, while a small step
// (speculative verification) keeps float32 activations throughout.
void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y, int64_t step_rows = 0);

// From this many tokens on, converting rows to float32 panels and running a
// GEMM beats one row kernel call per token and row (matmul, and MLA's
// absorptions of kv_b_proj).
constexpr int64_t kGemmMinTokens = 4;
// From this many tokens (rows of the step) on, bf16 weights take the bf16 GEMM (ops/gemm_bf16.h),
// which rounds the activations to bf16. Fewer tokens (a speculative
// verification step, a small decode batch) keep float32 activations, so that
// their logits stay within float32 noise of one-token decoding: greedy
// speculative decoding then reproduces plain greedy decoding, which bf16
// rounding (2^-9 per activation) does not on the tiny test models. A prompt's
// dense products are far above this; a routed expert of a 512-token prompt
// gets ~48 tokens on average at V2-Lite's shapes.
constexpr int64_t kGemmBf16MinTokens = 32;

// Which GEMM a product of `rows` rows (the larger of its tokens and its step's
// rows) on w runs, from kGemmMinTokens tokens on:
// - kBf16: gemm_bf16 (bf16-rounded activations): bf16 weights from
//   kGemmBf16MinTokens rows on; where the CPU has AVX512-BF16 also float8,
//   and q8/q4 unless their integer GEMM was asked for (use_gemm_q8_for_prompts).
//   Never while use_gemm_bf16_for_prefill is off (dsv2 serve).
// - kQ8: gemm_q8, the integer GEMM (q8/q4 otherwise).
// - kFloat32: rows converted to float32 panels, OpenBLAS (everything else).
enum class PromptGemm { kBf16, kQ8, kFloat32 };
PromptGemm prompt_gemm(const WeightMatrix& w, int64_t rows);
// q8/q4 prompts: the integer GEMM (true; what --activation-terms selects) or,
// where the CPU has AVX512-BF16, the weights widened to bf16 (false, the
// default: as close to the bf16 model as float32 activations, and faster
// than the integer GEMM's two activation terms; docs/PERFORMANCE.md).
void use_gemm_q8_for_prompts(bool enabled);

// One-token products y = W·x of several matrices in ONE parallel region, the
// threads splitting all their rows together. Decoding a MoE layer runs its
// experts this way instead of paying a fork/join (and an idle thread at the
// join) for every small matrix.
struct MatVec {
  const WeightMatrix* w;
  const float* x;  // [w->cols]
  float* y;        // [w->rows]
};
void matvec_many(const MatVec* products, int64_t count);

// Serial products with `count` consecutive rows of w starting at `first`, for
// callers already inside a parallel region (one attention head's slice of
// kv_b_proj while decoding). Rows are read as the batch-1 matmul path reads
// them: in their stored format, or from the panels that replaced them.
// y[i] = row(first + i) · x  (block-quantized rows take the integer kernel)
void matvec_rows(const WeightMatrix& w, int64_t first, int64_t count, const float* x, float* y);
// y = Σ_i coefficients[i] · row(first + i)  [w.cols]
void combine_rows(const WeightMatrix& w, int64_t first, int64_t count, const float* coefficients, float* y);

// Dot product with independent partial sums (vectorisable, fixed order).
float dot(const float* a, const float* b, int64_t n);
// y[i] += alpha * x[i]
void axpy(float alpha, const float* x, float* y, int64_t n);

}  // namespace dsv2
