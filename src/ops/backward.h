// Backward passes of the small kernels (elementwise.h holds the forward ones).
#pragma once

#include <cstdint>

namespace dsv2 {

// y = w ⊙ x · r, r = (mean(x²) + eps)^-½ per row. Adds to dx and dw.
void rmsnorm_backward(const float* x, const float* w, float eps, int64_t rows, int64_t n, const float* dy, float* dx,
                      float* dw);
// Inverse rotation of rope_rotate / rope_rotate_half_split (the rotation is
// orthogonal, so the gradient is rotated back by the same angles).
void rope_rotate_backward(float* dx, const float* cos, const float* sin, int64_t n);
void rope_rotate_half_split_backward(float* dx, const float* cos, const float* sin, int64_t n);
// Softmax over a row, given its output p: dz = p ⊙ (dp − Σ p·dp).
void softmax_backward(const float* p, const float* dp, int64_t n, float* dz);

}  // namespace dsv2
