// gemm_bf16 (ops/gemm_bf16.h). One AVX512-BF16 kernel compiled with its own
// target attribute (Highway 1.0.3 has no bf16 dot-product op, and its AVX3
// targets do not imply AVX512-BF16) and chosen by __builtin_cpu_supports, as
// gemm_q8's VNNI tile; the float32 path everywhere else.
#include "ops/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSV2_GEMM_BF16_X86 1
#else
#define DSV2_GEMM_BF16_X86 0
#endif

namespace dsv2 {
namespace {

constexpr int64_t kP = kGemmBf16PanelRows;
// Column pairs per panel: 32 rows × 512 columns of bf16 = 32 KB, packed once
// per call and run against every token. A 512-token prompt's activations for
// those columns (512 KB) stay in L2 across the panels of the block.
constexpr int64_t kBlockPairs = 256;
// Token tile: 2·kMaxTile float32 accumulators of 16 rows (12 chains hide
// vdpbf16ps's latency at two per cycle) and the two weight vectors.
constexpr int kMaxTile = 6;

std::atomic<bool> avx512_allowed{true};
std::atomic<bool> for_prefill{true};

bool cpu_has_avx512_bf16() {
#if DSV2_GEMM_BF16_X86
  static const bool has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}

bool use_avx512() { return avx512_allowed.load(std::memory_order_relaxed) && cpu_has_avx512_bf16(); }

uint16_t weight_at(const uint16_t* row, int64_t cols, int64_t c) { return c < cols ? row[c] : 0; }

void reference_gemm(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y,
                    int64_t ldy) {
  const int64_t pairs = x.ld / 2;
  for (int64_t i = 0; i < count; ++i) {
    const auto* row = reinterpret_cast<const uint16_t*>(w.row_data(first + i));
    for (int64_t t = 0; t < x.tokens; ++t) {
      const uint16_t* xt = x.values.data() + t * x.ld;
      float acc = 0.0f;
      for (int64_t j = 0; j < pairs; ++j) {
        acc = std::fma(bf16_to_float(weight_at(row, w.cols, 2 * j + 1)), bf16_to_float(xt[2 * j + 1]), acc);
        acc = std::fma(bf16_to_float(weight_at(row, w.cols, 2 * j)), bf16_to_float(xt[2 * j]), acc);
      }
      y[t * ldy + i] = acc;
    }
  }
}

// Elsewhere: the bf16-rounded activations and the rows as float32, OpenBLAS.
void float_gemm(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy) {
  constexpr int64_t kRows = 64;
  thread_local std::vector<float> xf, panel;  // grow-only
  xf.resize(static_cast<size_t>(x.tokens * w.cols));
  for (int64_t t = 0; t < x.tokens; ++t)
    for (int64_t c = 0; c < w.cols; ++c) xf[t * w.cols + c] = bf16_to_float(x.values[t * x.ld + c]);
  panel.resize(static_cast<size_t>(kRows * w.cols));
  for (int64_t p0 = 0; p0 < count; p0 += kRows) {
    const int64_t n = std::min(kRows, count - p0);
    for (int64_t r = 0; r < n; ++r) w.dequantize_row(first + p0 + r, panel.data() + r * w.cols);
    gemm(false, true, x.tokens, n, w.cols, 1.0f, xf.data(), w.cols, panel.data(), w.cols, 0.0f, y + p0, ldy);
  }
}

#if DSV2_GEMM_BF16_X86
#define DSV2_BF16_ATTR __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

// Rows [first, first + rows) of w, column pairs [j0, j0 + pairs), as
// [pair][row][2 values] (rows past `rows` and the column past cols zero).
void pack_panel(const WeightMatrix& w, int64_t first, int64_t rows, int64_t j0, int64_t pairs, uint32_t* out) {
  if (rows < kP) std::fill(out, out + pairs * kP, 0u);
  const uint16_t* row[kP];
  for (int64_t r = 0; r < rows; ++r) row[r] = reinterpret_cast<const uint16_t*>(w.row_data(first + r)) + 2 * j0;
  const int64_t full = std::min(pairs, w.cols / 2 - j0);  // pairs with both columns inside the row
  // 16 pairs (64 bytes) of every row at a time: their stores fill 16 lines of
  // the panel (2 KB) that stay in L1 until complete. A whole row at a time
  // stored into 256 lines 128 bytes apart, the panel's 32 KB over again for
  // each row: packing took 18% of a bf16 prefill, 3/4 of the tile kernel's time.
  constexpr int64_t kChunk = 16;
  for (int64_t c0 = 0; c0 < full; c0 += kChunk) {
    const int64_t c1 = std::min(full, c0 + kChunk);
    for (int64_t r = 0; r < rows; ++r) {
      // 32 rows read side by side are more streams than the hardware prefetchers follow
      __builtin_prefetch(row[r] + 2 * (c0 + 4 * kChunk));
      for (int64_t j = c0; j < c1; ++j) std::memcpy(out + j * kP + r, row[r] + 2 * j, 4);
    }
  }
  if (full < pairs)  // odd cols: the last column, paired with zero
    for (int64_t r = 0; r < rows; ++r) out[full * kP + r] = row[r][w.cols - 1 - 2 * j0];
}

struct Tile {
  const uint32_t* panel;  // [pair][kP]
  const uint16_t* x;      // the first token's first column of the block; token t at x + t·ld
  int64_t ld, pairs;
  int64_t rows;  // valid rows of the panel
  float* y;      // the first token's output for the panel's first row
  int64_t ldy;
  bool accumulate;  // continue the chains from y (blocks after the first)
};

template <int T>
DSV2_BF16_ATTR void TileBf16(const Tile& a) {
  const auto m0 = static_cast<__mmask16>(a.rows >= 16 ? 0xFFFF : (1u << a.rows) - 1);
  const auto m1 = static_cast<__mmask16>(a.rows >= 32 ? 0xFFFF : a.rows <= 16 ? 0 : (1u << (a.rows - 16)) - 1);
  __m512 f0[T], f1[T];
  for (int t = 0; t < T; ++t) {
    f0[t] = a.accumulate ? _mm512_maskz_loadu_ps(m0, a.y + t * a.ldy) : _mm512_setzero_ps();
    f1[t] = a.accumulate ? _mm512_maskz_loadu_ps(m1, a.y + t * a.ldy + 16) : _mm512_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t j = 0; j < a.pairs; ++j) {
    const __m512i w0 = _mm512_loadu_si512(a.panel + j * kP);
    const __m512i w1 = _mm512_loadu_si512(a.panel + j * kP + 16);
    for (int t = 0; t < T; ++t) {
      int32_t pair;
      std::memcpy(&pair, a.x + t * a.ld + 2 * j, 4);
      const __m512i xb = _mm512_set1_epi32(pair);
      f0[t] = _mm512_dpbf16_ps(f0[t], (__m512bh)w0, (__m512bh)xb);
      f1[t] = _mm512_dpbf16_ps(f1[t], (__m512bh)w1, (__m512bh)xb);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(a.y + t * a.ldy, m0, f0[t]);
    _mm512_mask_storeu_ps(a.y + t * a.ldy + 16, m1, f1[t]);
  }
}
#undef DSV2_BF16_ATTR

void avx512_gemm(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y,
                 int64_t ldy) {
  void (*const kernels[kMaxTile + 1])(const Tile&) = {nullptr,      &TileBf16<1>, &TileBf16<2>, &TileBf16<3>,
                                                      &TileBf16<4>, &TileBf16<5>, &TileBf16<6>};
  thread_local std::vector<uint32_t> panel;  // grow-only
  panel.resize(static_cast<size_t>(kBlockPairs * kP));
  const int64_t pairs = x.ld / 2;
  // Blocks of columns, each output's chain continued from y: the same order as one pass.
  for (int64_t j0 = 0; j0 < pairs; j0 += kBlockPairs) {
    const int64_t n = std::min(kBlockPairs, pairs - j0);
    for (int64_t p0 = 0; p0 < count; p0 += kP) {
      const int64_t rows = std::min(kP, count - p0);
      // Repacked at load: the same layout over all of the row's pairs.
      const uint32_t* packed = reinterpret_cast<const uint32_t*>(w.repacked_panel(first + p0));
      if (packed) {
        packed += j0 * kP;
      } else {
        pack_panel(w, first + p0, rows, j0, n, panel.data());
        packed = panel.data();
      }
      for (int64_t t0 = 0; t0 < x.tokens; t0 += kMaxTile) {
        const int64_t tile = std::min<int64_t>(kMaxTile, x.tokens - t0);
        const Tile a{packed, x.values.data() + t0 * x.ld + 2 * j0, x.ld, n, rows, y + t0 * ldy + p0, ldy, j0 > 0};
        kernels[tile](a);
      }
    }
  }
}
#endif

}  // namespace

void Bf16Activations::round(const float* x, int64_t n_tokens, int64_t n_cols) {
  tokens = n_tokens, cols = n_cols, ld = (n_cols + 1) / 2 * 2;
  values.resize(static_cast<size_t>(tokens * ld));
  parallel_for(tokens, std::max<int64_t>(1, (int64_t(1) << 19) / std::max<int64_t>(cols, 1)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      uint16_t* out = values.data() + t * ld;
      for (int64_t c = 0; c < cols; ++c) out[c] = float_to_bf16(x[t * cols + c]);
      if (ld > cols) out[cols] = 0;
    }
  });
}

void gemm_bf16(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy) {
  if (count <= 0 || x.tokens == 0) return;
#if DSV2_GEMM_BF16_X86
  if (use_avx512()) {
    avx512_gemm(x, w, first, count, y, ldy);
    return;
  }
#endif
  float_gemm(x, w, first, count, y, ldy);
}

size_t gemm_bf16_panel_bytes(const WeightMatrix& w) {
  if (w.dtype != DType::BF16 || !use_avx512()) return 0;
  return static_cast<size_t>((w.cols + 1) / 2 * kP) * sizeof(uint32_t);
}

void pack_gemm_bf16_panel(const WeightMatrix& w, int64_t index, std::byte* out) {
  require(gemm_bf16_panel_bytes(w) > 0 && index >= 0 && index * kP < w.rows, "gemm_bf16: no such panel to repack");
#if DSV2_GEMM_BF16_X86
  pack_panel(w, index * kP, std::min(kP, w.rows - index * kP), 0, (w.cols + 1) / 2, reinterpret_cast<uint32_t*>(out));
#else
  (void)out;
#endif
}

const char* gemm_bf16_kernel() { return use_avx512() ? "avx512-bf16" : "float32-sgemm"; }

void allow_gemm_bf16_avx512(bool allowed) { avx512_allowed.store(allowed); }

void use_gemm_bf16_for_prefill(bool enabled) { for_prefill.store(enabled); }

bool gemm_bf16_for_prefill() { return for_prefill.load(std::memory_order_relaxed); }

namespace reference {
void gemm_bf16(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy) {
  reference_gemm(x, w, first, count, y, ldy);
}
}  // namespace reference

}  // namespace dsv2
