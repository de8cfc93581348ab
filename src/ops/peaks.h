// The machine's arithmetic peaks, measured: register-only loops of independent
// accumulator chains (no memory traffic), on all threads together. Prefill
// figures are reported as a share of the peak of the arithmetic they run:
// float32 FMA (bf16/fp8 weights through float32 GEMMs), int8 dot products
// (q8/q4 weights through gemm_q8: vpdpbusd, or vpmaddubsw without VNNI), and
// the bf16 dot product vdpbf16ps where the CPU has AVX512-BF16.
#pragma once

#include <string>

namespace dsv2 {

struct ArithmeticPeaks {
  double fp32_fma_flops = 0.0;  // FLOP/s (2 per FMA lane)
  double int8_dot_ops = 0.0;    // op/s (2 per 8-bit multiply-add); vpdpbusd where there is VNNI, else vpmaddubsw + vpmaddwd
  double bf16_dot_flops = 0.0;  // FLOP/s (2 per bf16 multiply-add); 0 without AVX512-BF16
  std::string simd_target;      // Highway's target for the float32 loop
  std::string int8_kernel;      // which int8 instruction the int8 figure ran
};

// Best of `repeats` runs of about `seconds` each, per kind.
ArithmeticPeaks measure_arithmetic_peaks(double seconds = 0.1, int repeats = 3);

}  // namespace dsv2
