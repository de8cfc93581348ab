// y = x·Wᵀ (the nn.Linear convention): x is [tokens, W.cols], y is [tokens, W.rows].
#pragma once

#include <cstdint>

#include "ops/weight_matrix.h"

namespace dsv2 {

void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y);

// Dot product with independent partial sums (vectorisable, fixed order).
float dot(const float* a, const float* b, int64_t n);
// y[i] += alpha * x[i]
void axpy(float alpha, const float* x, float* y, int64_t n);

}  // namespace dsv2
