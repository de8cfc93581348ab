#include "ops/matmul.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/kernels.h"

namespace dsv2 {

float dot(const float* a, const float* b, int64_t n) { return dot_f32(a, b, n); }

void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

namespace {

// From this many tokens on, converting rows to float32 panels and running a
// GEMM beats one row kernel call per token and row.
constexpr int64_t kGemmMinTokens = 4;
constexpr int64_t kPanelRows = 64;

// One token: each row is read once in its stored format by its own kernel,
// never converted into a buffer (this is the batch-1 decode path).
float row_dot(const WeightMatrix& w, int64_t r, const float* x, float* row_buffer) {
  const std::byte* row = w.row_data(r);
  switch (w.dtype) {
    case DType::F32: return dot_f32(x, reinterpret_cast<const float*>(row), w.cols);
    case DType::BF16: return dot_bf16(x, reinterpret_cast<const uint16_t*>(row), w.cols);
    case DType::I8: return dot_q8(x, reinterpret_cast<const int8_t*>(row), w.row_scales(r), w.cols);
    case DType::U8: return dot_q4(x, reinterpret_cast<const uint8_t*>(row), w.row_scales(r), w.cols);
    case DType::F8_E4M3:
      return dot_fp8(x, reinterpret_cast<const uint8_t*>(row), w.fp8_row_scales(r), w.cols, w.block_cols);
    default:
      w.dequantize_row(r, row_buffer);
      return dot_f32(x, row_buffer, w.cols);
  }
}

}  // namespace

void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y) {
  if (tokens >= kGemmMinTokens) {
    // Several tokens: a float32 GEMM (OpenBLAS) per panel of rows, each panel
    // converted once per call. Threads split the rows; BLAS runs serially
    // inside each (nested OpenMP), so panels need no synchronisation.
    parallel_for(w.rows, kPanelRows, [&](int64_t r0, int64_t r1) {
      thread_local std::vector<float> panel;
      for (int64_t p0 = r0; p0 < r1; p0 += kPanelRows) {
        const int64_t n = std::min(kPanelRows, r1 - p0);
        const float* rows = w.f32_row(p0);
        if (!rows) {
          if (panel.size() < static_cast<size_t>(n * w.cols)) panel.resize(static_cast<size_t>(n * w.cols));
          for (int64_t r = 0; r < n; ++r) w.dequantize_row(p0 + r, panel.data() + r * w.cols);
          rows = panel.data();
        }
        gemm(false, true, tokens, n, w.cols, 1.0f, x, w.cols, rows, w.cols, 0.0f, y + p0, w.rows);
      }
    });
    return;
  }
  if (tokens == 1 && is_block_quantized(w.dtype)) {
    // Quantize the activation once; every row is then an integer dot product
    // (the loader ensured cols is a multiple of kQuantBlock).
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xs;
    xq.resize(static_cast<size_t>(w.cols));
    xs.resize(static_cast<size_t>(w.cols / kQuantBlock));
    quantize_activation_q8(x, w.cols, xq.data(), xs.data());
    const int8_t* q = xq.data();
    const float* s = xs.data();
    parallel_for(w.rows, 8, [&](int64_t r0, int64_t r1) {
      matvec_q8(q, s, w.row_data(r0), w.row_scales(r0), w.cols, r1 - r0, w.is_q4(), y + r0);
    });
    return;
  }
  parallel_for(w.rows, 8, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> row_buffer;
    if (row_buffer.size() < static_cast<size_t>(w.cols)) row_buffer.resize(w.cols);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = 0; t < tokens; ++t) y[t * w.rows + r] = row_dot(w, r, x + t * w.cols, row_buffer.data());
  });
}

}  // namespace dsv2
