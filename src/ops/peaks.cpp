// measure_arithmetic_peaks (ops/peaks.h). Each loop runs 12 independent
// accumulator chains (enough to hide the instruction's latency on every pipe
// that executes it) started from different values: equal chains let the
// compiler fold them into one and the "peak" reads several times too high.
// The operands come through a volatile, so nothing is evaluated at compile
// time. The VNNI and BF16 instructions are written as inline assembly: with
// the intrinsics GCC 12 copied every accumulator twice per iteration (24
// vmovdqa around 12 vpdpbusd). Checked with objdump: the loops are 12
// vfmadd231ps / vpdpbusd / vdpbf16ps (zmm) per iteration and the loop counter.
#include "ops/peaks.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "ops/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/peaks.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv2 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// `iterations` rounds of 12 FMA chains; returns the FLOPs done.
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

}  // namespace HWY_NAMESPACE
}  // namespace dsv2
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dsv2 {
HWY_EXPORT(FmaChains);

namespace {

constexpr int kChains = 12;
volatile int32_t operand_bits = 0x01020304;  // read once per call: never a compile-time constant

#if defined(__x86_64__)
// One `insn a, b` into each of the accumulators c0..c11 (AT&T operand order: b, a, c).
#define TWELVE_CHAINS(insn)                                                                                  \
  asm(insn " %13, %12, %0\n\t" insn " %13, %12, %1\n\t" insn " %13, %12, %2\n\t" insn " %13, %12, %3\n\t"   \
      insn " %13, %12, %4\n\t" insn " %13, %12, %5\n\t" insn " %13, %12, %6\n\t" insn " %13, %12, %7\n\t"    \
      insn " %13, %12, %8\n\t" insn " %13, %12, %9\n\t" insn " %13, %12, %10\n\t" insn " %13, %12, %11"       \
      : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), \
        "+v"(c10), "+v"(c11)                                                                               \
      : "v"(a), "v"(b))

// vpdpbusd zmm: 64 u8×s8 multiply-adds per instruction.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) double VnniChains(int64_t iterations, float* sink) {
  __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2), c3 = _mm512_set1_epi32(3),
          c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5), c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7),
          c8 = _mm512_set1_epi32(8), c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11);
  const __m512i a = _mm512_set1_epi32(operand_bits), b = _mm512_set1_epi32(operand_bits ^ 0x7F00FF00);
  for (int64_t it = 0; it < iterations; ++it)
    TWELVE_CHAINS("vpdpbusd");
  const __m512i sum = _mm512_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                       _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7))),
      _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  // One lane is enough to keep the chains alive (_mm512_reduce_add_epi32 sums the
  // lanes as int, which overflows: undefined behaviour that UBSan reports).
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, sum);
  *sink = static_cast<float>(lanes[0]);
  return 2.0 * 64 * kChains * static_cast<double>(iterations);
}

// vpmaddubsw + vpmaddwd + vpaddd (ymm), the AVX2 int8 dot product: 32 multiply-adds per group.
__attribute__((target("avx2"))) double MaddubsChains(int64_t iterations, float* sink) {
  __m256i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi32(operand_bits), b = _mm256_set1_epi32(operand_bits ^ 0x7F00FF00);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  __m256i sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_epi32(sum, acc[i]);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  *sink = static_cast<float>(lanes[0]);
  return 2.0 * 32 * kChains * static_cast<double>(iterations);
}

// vdpbf16ps zmm: 32 bf16 multiply-adds per instruction, float32 accumulators.
__attribute__((target("avx512f,avx512bf16"))) double Bf16Chains(int64_t iterations, float* sink) {
  __m512 c0 = _mm512_set1_ps(1.00f), c1 = _mm512_set1_ps(1.01f), c2 = _mm512_set1_ps(1.02f), c3 = _mm512_set1_ps(1.03f),
         c4 = _mm512_set1_ps(1.04f), c5 = _mm512_set1_ps(1.05f), c6 = _mm512_set1_ps(1.06f), c7 = _mm512_set1_ps(1.07f),
         c8 = _mm512_set1_ps(1.08f), c9 = _mm512_set1_ps(1.09f), c10 = _mm512_set1_ps(1.10f), c11 = _mm512_set1_ps(1.11f);
  // bf16 pairs near 1e-3 (0x3A83) from the volatile: the sums stay finite
  const int32_t bits = (operand_bits & 0) | 0x3A833A83;
  const __m512i a = _mm512_set1_epi32(bits), b = _mm512_set1_epi32(bits ^ 0x00010000);
  for (int64_t it = 0; it < iterations; ++it)
    TWELVE_CHAINS("vdpbf16ps");
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                                                 _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
                                   _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  *sink = _mm512_reduce_add_ps(sum);
  return 2.0 * 32 * kChains * static_cast<double>(iterations);
}
#endif

using Chains = double (*)(int64_t, float*);

// Operations per second of `chains` on all threads together, best of `repeats`
// runs of ~`seconds` (the iteration count calibrated on one thread first).
double peak_of(Chains chains, double seconds, int repeats) {
  float sink = 0.0f;
  int64_t iterations = 1 << 16;
  for (;;) {  // calibrate: double until one run takes >= 10 ms
    const auto t0 = std::chrono::steady_clock::now();
    chains(iterations, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= 0.01) {
      iterations = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iterations) * seconds / s));
      break;
    }
    iterations *= 2;
  }
  const int threads = num_threads();
  std::vector<float> sinks(static_cast<size_t>(threads));
  double best = 0.0;
  for (int rep = 0; rep < repeats; ++rep) {
    std::vector<double> ops(static_cast<size_t>(threads), 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) ops[t] = chains(iterations, &sinks[t]);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0.0;
    for (double o : ops) total += o;
    best = std::max(best, total / s);
  }
  return best;
}

}  // namespace

ArithmeticPeaks measure_arithmetic_peaks(double seconds, int repeats) {
  ArithmeticPeaks p;
  p.fp32_fma_flops = peak_of(HWY_DYNAMIC_DISPATCH(FmaChains), seconds, repeats);
  p.simd_target = simd_target();
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
    p.int8_dot_ops = peak_of(&VnniChains, seconds, repeats), p.int8_kernel = "vpdpbusd zmm";
  } else if (__builtin_cpu_supports("avx2")) {
    p.int8_dot_ops = peak_of(&MaddubsChains, seconds, repeats), p.int8_kernel = "vpmaddubsw+vpmaddwd ymm";
  }
  if (__builtin_cpu_supports("avx512bf16")) p.bf16_dot_flops = peak_of(&Bf16Chains, seconds, repeats);
#endif
  return p;
}

}  // namespace dsv2
#endif  // HWY_ONCE
