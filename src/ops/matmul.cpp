#include "ops/matmul.h"

#include <vector>

#include "core/parallel.h"

namespace dsv2 {

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y) {
  // Each weight row is converted once and then used for every token, so the
  // conversion cost is shared by the batch.
  parallel_for(w.rows, 8, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> row_buffer;
    if (row_buffer.size() < static_cast<size_t>(w.cols)) row_buffer.resize(w.cols);
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = w.f32_row(r);
      if (!row) {
        w.dequantize_row(r, row_buffer.data());
        row = row_buffer.data();
      }
      for (int64_t t = 0; t < tokens; ++t) y[t * w.rows + r] = dot(x + t * w.cols, row, w.cols);
    }
  });
}

}  // namespace dsv2
