#include "ops/backward.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"

namespace dsv2 {

void rmsnorm_backward(const float* x, const float* w, float eps, int64_t rows, int64_t n, const float* dy, float* dx,
                      float* dw) {
  // Rows in fixed chunks, each summing its own share of dw; the shares are
  // added in chunk order, so dw does not depend on the thread count.
  constexpr int64_t kRowsPerChunk = 64;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  std::vector<float> dw_parts(chunks * n, 0.0f);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t r = c0 * kRowsPerChunk; r < std::min(rows, c1 * kRowsPerChunk); ++r) {
      const float* xr = x + r * n;
      const float* dyr = dy + r * n;
      float* dw_part = dw_parts.data() + (r / kRowsPerChunk) * n;
      double sum_sq = 0.0, dot = 0.0;
      for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
      const double inv = 1.0 / std::sqrt(sum_sq / n + eps);
      for (int64_t i = 0; i < n; ++i) {
        dot += static_cast<double>(dyr[i]) * w[i] * xr[i];
        dw_part[i] += static_cast<float>(dyr[i] * xr[i] * inv);
      }
      const double coeff = dot * inv * inv * inv / n;
      for (int64_t i = 0; i < n; ++i) dx[r * n + i] += static_cast<float>(dyr[i] * w[i] * inv - xr[i] * coeff);
    }
  });
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < n; ++i) dw[i] += dw_parts[c * n + i];
}

void rope_rotate_backward(float* dx, const float* cos, const float* sin, int64_t n) {
  for (int64_t i = 0; i < n / 2; ++i) {
    const float a = dx[2 * i], b = dx[2 * i + 1];
    dx[2 * i] = a * cos[i] + b * sin[i];
    dx[2 * i + 1] = -a * sin[i] + b * cos[i];
  }
}

void rope_rotate_half_split_backward(float* dx, const float* cos, const float* sin, int64_t n) {
  const int64_t half = n / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = dx[i], b = dx[i + half];
    dx[i] = a * cos[i] + b * sin[i];
    dx[i + half] = -a * sin[i] + b * cos[i];
  }
}

void softmax_backward(const float* p, const float* dp, int64_t n, float* dz) {
  double dot = 0.0;
  for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(p[i]) * dp[i];
  for (int64_t i = 0; i < n; ++i) dz[i] = static_cast<float>(p[i] * (dp[i] - dot));
}

}  // namespace dsv2
