// GFLOP/s of the float32 GEMMs training uses (OpenBLAS through ops/gemm.h), for
// the "share of the machine's fp32 peak" figure. Median of 7 runs per shape.
//   bench_gemm [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/parallel.h"
#include "ops/gemm.h"

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
    std::vector<double> times;
    for (int r = 0; r < 7; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      dsv2::gemm(false, false, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f, c.data(), s.n);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double gflops = 2.0 * s.m * s.n * s.k / times[3] / 1e9;
    std::printf("%s{\"shape\": \"%s\", \"gflops\": %.1f}", first ? "" : ", ", s.what, gflops);
    first = false;
  }
  std::printf("]}\n");
  return 0;
}
