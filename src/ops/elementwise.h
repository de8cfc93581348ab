// Small per-row kernels: RMSNorm, softmax, SiLU-gated product, RoPE rotation,
// the AdamW update.
// Like the matmul row kernels (ops/kernels.h) they are compiled for each SIMD
// target with Highway and picked at run time; a scalar reference of each sits
// in `reference` and tests compare them.
#pragma once

#include <cstdint>

namespace dsv2 {

// out = x / sqrt(mean(x²) + eps) * weight, for `rows` rows of `n` values
// (rows spread over the threads when there is enough work).
void rmsnorm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, float* out);
// In-place softmax of one row (max-subtracted, so it never overflows).
void softmax(float* x, int64_t n);
// x[i] = exp(x[i] - shift); returns Σ x[i]. -inf entries become 0.
float exp_shifted_sum(float* x, int64_t n, float shift);
// Σ x[i]² in float32 (independent vector accumulators).
float sum_of_squares(const float* x, int64_t n);
// max of x[0..n), -inf for n = 0.
float max_value(const float* x, int64_t n);
float sigmoid(float x);
float silu(float x);
// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);
// out[i] = silu(gate[i]) * up[i], spread over the threads (training keeps gate).
void silu_mul_to(const float* gate, const float* up, float* out, int64_t n);
// Its gradient: h = silu(g)⊙u gives dg, du from dh (spread over the threads).
void silu_mul_backward(const float* gate, const float* up, const float* dh, int64_t n, float* dgate, float* dup);
// Rotates interleaved pairs (x[2i], x[2i+1]) by angle θ_i: cos/sin hold n/2 values.
void rope_rotate(float* x, const float* cos, const float* sin, int64_t n);
// Rotates half-split pairs (x[i], x[i + n/2]), the layout of rope_interleave=false.
void rope_rotate_half_split(float* x, const float* cos, const float* sin, int64_t n);

// One AdamW step's constants: computed in double, rounded once to float32 and
// applied in float32, as torch.optim.AdamW does.
struct AdamWStep {
  float decay;             // 1 − lr·weight_decay, or 1 where the tensor has no decay
  float beta1, beta2;
  float step_size;         // lr / (1 − β1^t)
  float sqrt_correction2;  // √(1 − β2^t)
  float eps;
};
// AdamW on n values (one thread; the optimizer spreads tensors over threads):
// p ← p·decay; m ← m + (1−β1)(g − m); v ← β2·v + (1−β2)·g²;
// p ← p − step_size · m / (√v / sqrt_correction2 + eps).
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s);

namespace reference {
void rmsnorm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, float* out);
void softmax(float* x, int64_t n);
float exp_shifted_sum(float* x, int64_t n, float shift);
void silu_mul(float* gate, const float* up, int64_t n);
void silu_mul_backward(const float* gate, const float* up, const float* dh, int64_t n, float* dgate, float* dup);
void rope_rotate(float* x, const float* cos, const float* sin, int64_t n);
void rope_rotate_half_split(float* x, const float* cos, const float* sin, int64_t n);
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s);
}  // namespace reference

}  // namespace dsv2
