// Dense float32 matrix products for training, row-major:
//   C = alpha · op(A) · op(B) + beta · C,  op(X) = X or Xᵀ.
// OpenBLAS (OpenMP build, so it shares dsv2's threads) does the work; the
// scalar reference is kept for tests.
#pragma once

#include <cstdint>

namespace dsv2 {

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void gemm_reference(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The three products of a linear layer y = x·Wᵀ (x [n, in], W [out, in]):
inline void linear_forward(const float* x, int64_t n, const float* w, int64_t out, int64_t in, float* y) {
  gemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}
// dx (+)= dy·W
inline void linear_backward_input(const float* dy, int64_t n, const float* w, int64_t out, int64_t in, float* dx,
                                  bool accumulate) {
  gemm(false, false, n, in, out, 1.0f, dy, out, w, in, accumulate ? 1.0f : 0.0f, dx, in);
}
// dW += dyᵀ·x
inline void linear_backward_weight(const float* dy, int64_t n, const float* x, int64_t out, int64_t in, float* dw) {
  gemm(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
}

}  // namespace dsv2
