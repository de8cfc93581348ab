// GFLOP/s of the float32 GEMMs training uses (OpenBLAS through ops/gemm.h),
// G op/s of the integer GEMM prefill runs on q8/q4 weights (matmul →
// ops/gemm_q8.h) and the GFLOP/s of bf16 prefill (ops/gemm_bf16.h against the
// float32 path it replaced) at DeepSeek-V2-Lite's shapes, and the machine's arithmetic
// peaks (ops/peaks.h: float32 FMA, int8 dot product, bf16 dot product) for
// the "share of the peak" figures. Median of 7 runs per shape.
//   bench_gemm [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/peaks.h"
#include "ops/weight_matrix.h"

namespace {

template <class F>
double median_seconds(F&& run) {
  std::vector<double> times;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[3];
}

// matmul of `tokens` random activations with a random rows × cols q8 or q4 matrix, G op/s.
double quantized_matmul_gops(dsv2::DType dtype, int64_t tokens, int64_t rows, int64_t cols) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(cols)), x(static_cast<size_t>(tokens * cols)), y(static_cast<size_t>(tokens * rows));
  for (auto& v : x) v = dist(rng);
  std::vector<std::byte> data(static_cast<size_t>(rows * dsv2::stored_columns(dtype, cols)));
  std::vector<float> scales(static_cast<size_t>(rows * cols / dsv2::kQuantBlock));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : values) v = dist(rng);
    dsv2::encode_row(dtype, values.data(), cols, data.data() + r * dsv2::stored_columns(dtype, cols),
                     scales.data() + r * (cols / dsv2::kQuantBlock));
  }
  dsv2::WeightMatrix w;
  w.dtype = dtype, w.rows = rows, w.cols = cols, w.data = data.data(), w.scale_inv = scales.data();
  w.block_rows = 1, w.block_cols = dsv2::kQuantBlock;
  const double s = median_seconds([&] { dsv2::matmul(x.data(), tokens, w, y.data()); });
  return 2.0 * static_cast<double>(tokens * rows * cols) / s / 1e9;
}

// matmul of `tokens` random activations with a random rows × cols bf16 matrix, GFLOP/s, through
// gemm_bf16 or (bf16_gemm false) the float32 path.
double bf16_matmul_gflops(bool bf16_gemm, int64_t tokens, int64_t rows, int64_t cols) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(tokens * cols)), y(static_cast<size_t>(tokens * rows));
  std::vector<uint16_t> data(static_cast<size_t>(rows * cols));
  for (auto& v : x) v = dist(rng);
  for (auto& v : data) v = dsv2::float_to_bf16(0.05f * dist(rng));
  dsv2::WeightMatrix w;
  w.dtype = dsv2::DType::BF16, w.rows = rows, w.cols = cols, w.data = reinterpret_cast<const std::byte*>(data.data());
  dsv2::use_gemm_bf16_for_prefill(bf16_gemm);
  const double s = median_seconds([&] { dsv2::matmul(x.data(), tokens, w, y.data()); });
  dsv2::use_gemm_bf16_for_prefill(true);
  return 2.0 * static_cast<double>(tokens * rows * cols) / s / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 2);
  struct Shape {
    const char* what;
    int64_t m, n, k;
  };
  // Token batch 4096, hidden 256: the `small` preset's projections, expert MLP, LM head.
  const Shape shapes[] = {{"q_b_proj forward  4096x384x128", 4096, 384, 128},
                          {"expert up forward  1024x128x256", 1024, 128, 256},
                          {"dense MLP forward  4096x768x256", 4096, 768, 256},
                          {"LM head forward   256x12000x256", 256, 12000, 256},
                          {"LM head dW       12000x256x4096", 12000, 256, 4096}};
  std::printf("{\"results\": [");
  bool first = true;
  for (const auto& s : shapes) {
    std::vector<float> a(s.m * s.k, 0.5f), b(s.k * s.n, 0.25f), c(s.m * s.n);
    const double seconds = median_seconds([&] {
      dsv2::gemm(false, false, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f, c.data(), s.n);
    });
    std::printf("%s{\"shape\": \"%s\", \"gflops\": %.1f}", first ? "" : ", ", s.what, 2.0 * s.m * s.n * s.k / seconds / 1e9);
    first = false;
  }
  // DeepSeek-V2-Lite's prefill products of a 512-token prompt: q_proj, a routed expert's
  // gate/up (512 · 6 / 64 = 48 tokens on average) and down, the dense layer's up.
  const Shape quantized[] = {{"q_proj           512x3072x2048", 512, 3072, 2048},
                             {"expert gate/up     48x1408x2048", 48, 1408, 2048},
                             {"expert down        48x2048x1408", 48, 2048, 1408},
                             {"dense up         512x10944x2048", 512, 10944, 2048}};
  std::printf("], \"int8_gemm\": [");
  first = true;
  for (const auto& s : quantized)
    for (dsv2::DType dtype : {dsv2::DType::I8, dsv2::DType::U8}) {
      std::printf("%s{\"shape\": \"%s\", \"weights\": \"%s\", \"gops\": %.1f}", first ? "" : ", ", s.what,
                  dtype == dsv2::DType::I8 ? "q8" : "q4", quantized_matmul_gops(dtype, s.m, s.n, s.k));
      first = false;
    }
  std::printf("], \"bf16_gemm\": [");
  first = true;
  for (const auto& s : quantized) {
    std::printf("%s{\"shape\": \"%s\", \"gflops\": %.1f, \"float32_path_gflops\": %.1f}", first ? "" : ", ", s.what,
                bf16_matmul_gflops(true, s.m, s.n, s.k), bf16_matmul_gflops(false, s.m, s.n, s.k));
    first = false;
  }
  const dsv2::ArithmeticPeaks p = dsv2::measure_arithmetic_peaks(0.2, 5);
  std::printf("], \"int8_gemm_kernel\": \"%s\", \"fp32_fma_peak_gflops\": %.1f, \"int8_dot_peak_gops\": %.1f, "
              "\"int8_dot_instruction\": \"%s\", \"bf16_dot_peak_gflops\": %.1f, \"simd_target\": \"%s\", "
              "\"bf16_gemm_kernel\": \"%s\"}\n",
              dsv2::gemm_q8_kernel(), p.fp32_fma_flops / 1e9, p.int8_dot_ops / 1e9, p.int8_kernel.c_str(),
              p.bf16_dot_flops / 1e9, p.simd_target.c_str(), dsv2::gemm_bf16_kernel());
  return 0;
}
