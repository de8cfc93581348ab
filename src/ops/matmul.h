// y = x·Wᵀ (the nn.Linear convention): x is [tokens, W.cols], y is [tokens, W.rows].
#pragma once

#include <cstdint>

#include "ops/weight_matrix.h"

namespace dsv2 {

void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y);

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

// Dot product with independent partial sums (vectorisable, fixed order).
float dot(const float* a, const float* b, int64_t n);
// y[i] += alpha * x[i]
void axpy(float alpha, const float* x, float* y, int64_t n);

}  // namespace dsv2
