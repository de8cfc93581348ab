// GFLOP/s of the float32 GEMMs training uses (OpenBLAS through ops/gemm.h), for
// the "share of the machine's fp32 peak" figure, and that peak itself: a
// register-only FMA loop at the widest SIMD target Highway finds. Median of 7
// runs per shape, best of 5 for the peak.
//   bench_gemm [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/parallel.h"
#include "ops/gemm.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/bench_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// `iterations` rounds of 12 independent FMA chains (enough to hide the FMA
// latency on both pipes). The chains start from different values: equal ones
// let the compiler fold them into one chain and the "peak" reads several times
// too high. Returns the FLOPs done; the sum keeps the loop alive.
double FmaChains(int64_t iterations, float* sink) {
  const hn::ScalableTag<float> df;
  constexpr int kChains = 12;
  hn::Vec<decltype(df)> acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = hn::Set(df, 1.0f + 0.01f * static_cast<float>(i));
  const auto mul = hn::Set(df, 0.9999999f), add = hn::Set(df, 1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = hn::MulAdd(acc[i], mul, add);
  auto sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = hn::Add(sum, acc[i]);
  *sink = hn::GetLane(hn::SumOfLanes(df, sum));
  return 2.0 * kChains * static_cast<double>(hn::Lanes(df)) * static_cast<double>(iterations);
}

// The SIMD target the dispatcher picked, for the report.
const char* TargetInUse() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bench {
HWY_EXPORT(FmaChains);
HWY_EXPORT(TargetInUse);

// float32 FMA GFLOP/s of all threads together, best of 5.
double fma_peak_gflops() {
  const int threads = dsv2::num_threads();
  std::vector<float> sinks(threads);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> flops(threads, 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    dsv2::parallel_for(threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) flops[t] = HWY_DYNAMIC_DISPATCH(FmaChains)(20000000, &sinks[t]);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds / 1e9);
  }
  return best;
}

}  // namespace bench

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
  std::printf("], \"fp32_fma_peak_gflops\": %.1f, \"simd_target\": \"%s\"}\n", bench::fma_peak_gflops(),
              HWY_DYNAMIC_DISPATCH(bench::TargetInUse)());
  return 0;
}
#endif  // HWY_ONCE
