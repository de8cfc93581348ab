#include "ops/matmul.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/kernels.h"

namespace dsv2 {

float dot(const float* a, const float* b, int64_t n) { return dot_f32(a, b, n); }

void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

namespace {

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

// y[i] = row(first + i) · x for i < count, on the calling thread. Block-quantized
// rows take the integer kernel with x already quantized to (xq, xs).
void rows_times(const WeightMatrix& w, int64_t first, int64_t count, const float* x, const int8_t* xq, const float* xs,
                float* y) {
  if (is_block_quantized(w.dtype)) {
    matvec_q8(xq, xs, w.row_data(first), w.row_scales(first), w.cols, count, w.is_q4(), y);
    return;
  }
  if (w.products_read_panels()) {
    matvec_bf16_panels(x, 1, w.cols, w, first, count, y, 1);
    return;
  }
  thread_local std::vector<float> row_buffer;  // grow-only
  if (row_buffer.size() < static_cast<size_t>(w.cols)) row_buffer.resize(w.cols);
  for (int64_t i = 0; i < count; ++i) y[i] = row_dot(w, first + i, x, row_buffer.data());
}

// y = x·Wᵀ by a GEMM over prepared activations, the threads splitting w's rows
// in whole panels of panel_rows. `xa` is the caller's (thread_local) buffer,
// passed by reference so the workers read the caller's, not their own.
template <class Activations>
void rows_in_panels(const Activations& xa, const WeightMatrix& w, int64_t panel_rows, float* y,
                    void (*gemm)(const Activations&, const WeightMatrix&, int64_t, int64_t, float*, int64_t)) {
  const int64_t panels = (w.rows + panel_rows - 1) / panel_rows;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    const int64_t r0 = p0 * panel_rows, r1 = std::min(w.rows, p1 * panel_rows);
    gemm(xa, w, r0, r1 - r0, y + r0, w.rows);
  });
}

std::atomic<bool> q8_for_prompts{false};

}  // namespace

void use_gemm_q8_for_prompts(bool enabled) { q8_for_prompts.store(enabled); }

PromptGemm prompt_gemm(const WeightMatrix& w, int64_t rows) {
  const bool bf16_allowed = rows >= kGemmBf16MinTokens && gemm_bf16_for_prefill() && gemm_bf16_takes(w);
  if (w.dtype == DType::BF16) return bf16_allowed ? PromptGemm::kBf16 : PromptGemm::kFloat32;
  const bool widened = bf16_allowed && gemm_bf16_native();
  if (is_block_quantized(w.dtype))
    return widened && !q8_for_prompts.load(std::memory_order_relaxed) ? PromptGemm::kBf16 : PromptGemm::kQ8;
  return widened ? PromptGemm::kBf16 : PromptGemm::kFloat32;
}

void matmul(const float* x, int64_t tokens, const WeightMatrix& w, float* y, int64_t step_rows) {
  if (w.rows == 0 || tokens == 0) return;  // (a rank's empty share of a split weight)
  const PromptGemm kind = prompt_gemm(w, std::max(tokens, step_rows));
  if (tokens >= kGemmMinTokens && kind == PromptGemm::kQ8) {
    // Several tokens on q8/q4 weights: the activations quantized once, then the
    // integer GEMM (ops/gemm_q8.h), threads splitting the rows in whole panels.
    thread_local Q8Activations activations_buffer;  // grow-only
    activations_buffer.quantize(x, tokens, w.cols, gemm_q8_activation_terms());
    rows_in_panels(activations_buffer, w, kGemmQ8PanelRows, y, &gemm_q8);
    return;
  }
  if (tokens >= kGemmMinTokens && kind == PromptGemm::kBf16) {
    // Several tokens on bf16 weights (or others widened to bf16): the activations rounded to
    // bf16 once per product, then the bf16 GEMM (ops/gemm_bf16.h: vdpbf16ps, float32 sums).
    thread_local Bf16Activations activations_buffer;  // grow-only
    activations_buffer.round(x, tokens, w.cols);
    rows_in_panels(activations_buffer, w, kGemmBf16PanelRows, y, &gemm_bf16);
    return;
  }
  if (tokens > 1 && w.products_read_panels()) {
    // A few tokens (below kGemmBf16MinTokens) on bf16 weights kept only as panels: up to four
    // tokens at a time against each panel while it is in cache, each token's outputs the bits
    // decoding it alone gives (matvec_bf16_panels); threads split the rows in whole panels.
    const int64_t panels = (w.rows + kGemmBf16PanelRows - 1) / kGemmBf16PanelRows;
    parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
      const int64_t r0 = p0 * kGemmBf16PanelRows, r1 = std::min(w.rows, p1 * kGemmBf16PanelRows);
      matvec_bf16_panels(x, tokens, w.cols, w, r0, r1 - r0, y + r0, w.rows);
    });
    return;
  }
  if (tokens >= kGemmMinTokens) {
    // Several tokens (f32, f16, float8 weights; bf16 in a step below kGemmBf16MinTokens):
    // a float32 GEMM (OpenBLAS) per panel of rows, each panel
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
  if (tokens == 1) {
    const MatVec product{&w, x, y};
    matvec_many(&product, 1);
    return;
  }
  if (is_block_quantized(w.dtype)) {
    // A few tokens (a speculative verification step, a small batch): each token's activation is
    // quantized once, as for one token, and every few rows go through the integer kernel for each
    // token while they are still in cache — the weights are read from memory once, and each token's
    // row is exactly what the one-token path computes. (With the float kernels below, a 2-token
    // step cost 3.8-4.0x a one-token step on q4 V2-Lite shapes, now 2.3x; docs/PERFORMANCE.md.)
    thread_local std::vector<int8_t> xq_buffer;  // grow-only
    thread_local std::vector<float> xs_buffer;
    std::vector<int8_t>& xq = xq_buffer;  // the workers below must see the caller's buffers
    std::vector<float>& xs = xs_buffer;
    const int64_t blocks = w.cols / kQuantBlock;
    xq.resize(static_cast<size_t>(tokens * w.cols));
    xs.resize(static_cast<size_t>(tokens * blocks));
    for (int64_t t = 0; t < tokens; ++t)
      quantize_activation_q8(x + t * w.cols, w.cols, xq.data() + t * w.cols, xs.data() + t * blocks);
    constexpr int64_t kRowsInCache = 16;
    parallel_for(w.rows, 8, [&](int64_t r0, int64_t r1) {
      for (int64_t c0 = r0; c0 < r1; c0 += kRowsInCache)
        for (int64_t t = 0; t < tokens; ++t)
          rows_times(w, c0, std::min(kRowsInCache, r1 - c0), x + t * w.cols, xq.data() + t * w.cols,
                     xs.data() + t * blocks, y + t * w.rows + c0);
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

void matvec_rows(const WeightMatrix& w, int64_t first, int64_t count, const float* x, float* y) {
  thread_local std::vector<int8_t> xq;  // grow-only
  thread_local std::vector<float> xs;
  if (is_block_quantized(w.dtype)) {
    xq.resize(static_cast<size_t>(w.cols));
    xs.resize(static_cast<size_t>(w.cols / kQuantBlock));
    quantize_activation_q8(x, w.cols, xq.data(), xs.data());
  }
  rows_times(w, first, count, x, xq.data(), xs.data(), y);
}

void combine_rows(const WeightMatrix& w, int64_t first, int64_t count, const float* coefficients, float* y) {
  thread_local std::vector<float> row_buffer;  // grow-only; one row, stays in L1
  row_buffer.resize(static_cast<size_t>(w.cols));
  std::fill(y, y + w.cols, 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    const float* row = w.f32_row(first + i);
    if (!row) {
      w.dequantize_row(first + i, row_buffer.data());
      row = row_buffer.data();
    }
    axpy(coefficients[i], row, y, w.cols);
  }
}

void matvec_many(const MatVec* products, int64_t count) {
  // Block-quantized weights take the integer path: each activation is
  // quantized to q8 once (the loader ensured cols is a multiple of
  // kQuantBlock) and every row is an integer dot product.
  thread_local std::vector<int8_t> xq_buffer;  // grow-only
  thread_local std::vector<float> xs_buffer;
  thread_local std::vector<int64_t> first_row_buffer;
  std::vector<int8_t>& xq = xq_buffer;  // the workers below must see the caller's buffers
  std::vector<float>& xs = xs_buffer;
  std::vector<int64_t>& first_row = first_row_buffer;
  first_row.assign(static_cast<size_t>(count + 1), 0);
  int64_t quantized_values = 0;
  for (int64_t j = 0; j < count; ++j) {
    first_row[j + 1] = first_row[j] + products[j].w->rows;
    if (is_block_quantized(products[j].w->dtype)) quantized_values += products[j].w->cols;
  }
  xq.resize(static_cast<size_t>(quantized_values));
  xs.resize(static_cast<size_t>(quantized_values / kQuantBlock));
  for (int64_t j = 0, at = 0; j < count; ++j) {
    const WeightMatrix& w = *products[j].w;
    if (!is_block_quantized(w.dtype)) continue;
    quantize_activation_q8(products[j].x, w.cols, xq.data() + at, xs.data() + at / kQuantBlock);
    at += w.cols;
  }
  parallel_for(first_row[count], 8, [&](int64_t r0, int64_t r1) {
    int64_t at = 0;  // where product j's quantized activation starts
    for (int64_t j = 0; j < count && first_row[j] < r1; ++j) {
      const WeightMatrix& w = *products[j].w;
      const int64_t a = std::max(r0, first_row[j]) - first_row[j], b = std::min(r1, first_row[j + 1]) - first_row[j];
      if (a < b) rows_times(w, a, b - a, products[j].x, xq.data() + at, xs.data() + at / kQuantBlock, products[j].y + a);
      if (is_block_quantized(w.dtype)) at += w.cols;
    }
  });
}

}  // namespace dsv2
