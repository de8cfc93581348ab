// gemm_bf16 (ops/gemm_bf16.h). One AVX512-BF16 kernel compiled with its own
// target attribute (Highway 1.0.3 has no bf16 dot-product op, and its AVX3
// targets do not imply AVX512-BF16) and chosen by __builtin_cpu_supports, as
// gemm_q8's VNNI tile; the float32 path everywhere else.
#include "ops/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSV2_GEMM_BF16_X86 1
#else
#define DSV2_GEMM_BF16_X86 0
#endif

namespace dsv2 {
namespace {

constexpr int64_t kP = kGemmBf16PanelRows;
// Column pairs per block: 2048 columns, a whole V2-Lite hidden row. Two
// panels of it (256 KB) are packed once per call into a buffer that stays in
// L2 and run against every token, each token tile over the whole block, so its
// 24 accumulators go through memory once per block. Blocks of 256 pairs (two
// panels in 64 KB) made one thread's bf16 prefill 8% slower repacked and ~10%
// slower packed per call; 128 and 64 slower still (docs/PERFORMANCE.md).
constexpr int64_t kBlockPairs = 1024;
// Token tile: kMaxTile tokens against two panels side by side (64 rows):
// 4·kMaxTile float32 accumulators of 16 rows, the four weight vectors and a
// token's broadcast pair fill 29 of the 32 registers. One broadcast then feeds
// four vdpbf16ps instead of two: one thread's bf16 prefill 285 -> 293
// tokens/s against a tile of one panel (docs/PERFORMANCE.md).
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

// Row r as the bf16 values gemm_bf16 multiplies: bf16 rows as stored, other
// types dequantized to float32 (value = scale · q) and rounded to bf16.
void widened_row(const WeightMatrix& w, int64_t r, std::vector<float>& f, std::vector<uint16_t>& out) {
  out.resize(static_cast<size_t>(w.cols));
  if (w.dtype == DType::BF16) {
    std::memcpy(out.data(), w.row_data(r), out.size() * sizeof(uint16_t));
    return;
  }
  f.resize(static_cast<size_t>(w.cols));
  w.dequantize_row(r, f.data());
  for (int64_t c = 0; c < w.cols; ++c) out[c] = float_to_bf16(f[c]);
}

void reference_gemm(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y,
                    int64_t ldy) {
  const int64_t pairs = x.ld / 2;
  std::vector<float> dequantized;
  std::vector<uint16_t> widened;
  for (int64_t i = 0; i < count; ++i) {
    widened_row(w, first + i, dequantized, widened);
    const uint16_t* row = widened.data();
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
    if (w.dtype != DType::BF16)  // the values the AVX512 kernel multiplies
      for (int64_t i = 0; i < n * w.cols; ++i) panel[i] = bf16_to_float(float_to_bf16(panel[i]));
    gemm(false, true, x.tokens, n, w.cols, 1.0f, xf.data(), w.cols, panel.data(), w.cols, 0.0f, y + p0, ldy);
  }
}

#if DSV2_GEMM_BF16_X86
// GCC 12 warns that the _mm512_undefined_* operands inside its own widening
// intrinsics "may be used uninitialized" when they are inlined into functions
// that get the ISA from a target attribute (GCC bug 105593), as in ops/amx.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define DSV2_BF16_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

// float8 e4m3 codes (one per lane) as fp8_e4m3_to_float gives them, rebuilt
// as float32 bits: S.EEEE.MMM is 2^(E-7)·(1 + M/8), M·2^-9 where E is 0, NaN
// at E = 15, M = 7 (no infinities). A table through vpgatherdd cost a third
// of fp8 prefill more than this.
DSV2_BF16_ATTR inline __m512 e4m3_to_float(__m512i code) {
  const __m512i magnitude = _mm512_and_si512(code, _mm512_set1_epi32(0x7F));
  const __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(magnitude, 20), _mm512_set1_epi32(120 << 23));
  __m512 v = _mm512_castsi512_ps(normal);
  v = _mm512_mask_mul_ps(v, _mm512_cmplt_epi32_mask(magnitude, _mm512_set1_epi32(8)),
                         _mm512_cvtepi32_ps(magnitude), _mm512_set1_ps(0x1p-9f));
  v = _mm512_mask_mov_ps(v, _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7F)),
                         _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(code, _mm512_set1_epi32(0x80)), 24);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
}

// 32 values dequantized (scale · q, as WeightMatrix::dequantize_row) into lo
// (the first 16) and hi: a q8/q4 block (one scale), or 32 float8 values
// inside one scale block (gemm_bf16_takes); `at` is the first one's byte.
DSV2_BF16_ATTR void dequantize_32(DType dtype, const std::byte* at, float scale, __m512& lo, __m512& hi) {
  const __m512 s = _mm512_set1_ps(scale);
  const auto* q = reinterpret_cast<const __m128i*>(at);
  if (dtype == DType::I8) {
    lo = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))));
    hi = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1))));
  } else if (dtype == DType::U8) {  // byte i: value i in the low nibble, i + 16 in the high one
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(q));
    const __m512i eight = _mm512_set1_epi32(8);
    lo = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(b, _mm512_set1_epi32(15)), eight)));
    hi = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 4), eight)));
  } else {
    lo = _mm512_mul_ps(s, e4m3_to_float(_mm512_cvtepu8_epi32(_mm_loadu_si128(q))));
    hi = _mm512_mul_ps(s, e4m3_to_float(_mm512_cvtepu8_epi32(_mm_loadu_si128(q + 1))));
  }
}

// v[i] holds 16 dwords of row i; afterwards v[j] holds dword j of the 16 rows.
DSV2_BF16_ATTR inline void transpose_16x16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // in each 128-bit lane: rows i, i+1 interleaved
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int k = 0; k < 16; k += 4) {  // lane L of v[k + m]: rows k..k+3 of dword 4L + m
    v[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
    v[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
    v[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
    v[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
  }
  for (int m = 0; m < 4; ++m) {  // lanes even/odd of rows 0-7 (t[m]) and 8-15 (t[m + 4])
    t[m] = _mm512_shuffle_i32x4(v[m], v[4 + m], 0x88);
    t[m + 4] = _mm512_shuffle_i32x4(v[m], v[4 + m], 0xDD);
    t[m + 8] = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0x88);
    t[m + 12] = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0xDD);
  }
  for (int m = 0; m < 4; ++m) {
    v[m] = _mm512_shuffle_i32x4(t[m], t[m + 8], 0x88);            // dword m: lane 0 of each
    v[8 + m] = _mm512_shuffle_i32x4(t[m], t[m + 8], 0xDD);        // dword 8 + m: lane 2
    v[4 + m] = _mm512_shuffle_i32x4(t[m + 4], t[m + 12], 0x88);   // dword 4 + m: lane 1
    v[12 + m] = _mm512_shuffle_i32x4(t[m + 4], t[m + 12], 0xDD);  // dword 12 + m: lane 3
  }
}

// pack_panel for weights stored other than as bf16: 32 columns (one q8/q4
// block, 16 pairs) of 16 rows at a time, dequantized, rounded to bf16 and
// transposed in registers, so that each of the 16 pairs is one 64-byte store
// of its 16 rows (a 16-lane scatter per row instead made widening cost more
// than the integer GEMM's whole per-call packing).
DSV2_BF16_ATTR void pack_widened(const WeightMatrix& w, int64_t first, int64_t rows, int64_t j0, int64_t pairs,
                                 uint32_t* out) {
  constexpr int64_t kChunk = 16;
  const std::byte* row[kP];
  const void* scales[kP];  // row r's: float16 or float32 per q8/q4 block; float8: float32 per column block
  const bool f16_scales = is_block_quantized(w.dtype) && w.scale_dtype == DType::F16;
  for (int64_t r = 0; r < rows; ++r) {
    row[r] = w.row_data(first + r);
    scales[r] = is_block_quantized(w.dtype) ? w.row_scales(first + r).data : w.fp8_row_scales(first + r);
  }
  const int64_t ahead = stored_columns(w.dtype, 8 * kChunk);  // 4 chunks on (one byte per stored column)
  for (int64_t c0 = 0; c0 < pairs; c0 += kChunk) {
    const int64_t c = 2 * (j0 + c0), at = stored_columns(w.dtype, c);
    const int64_t block = is_block_quantized(w.dtype) ? c / kQuantBlock : c / w.block_cols;
    for (int64_t g = 0; g < rows; g += 16) {
      __m512i v[16];
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t r = g + i;
        if (r >= rows) {
          v[i] = _mm512_setzero_si512();
          continue;
        }
        __builtin_prefetch(row[r] + at + ahead);
        const float scale = f16_scales ? _cvtsh_ss(static_cast<const uint16_t*>(scales[r])[block])
                                       : static_cast<const float*>(scales[r])[block];
        __m512 lo, hi;
        dequantize_32(w.dtype, row[r] + at, scale, lo, hi);
        // vcvtne2ps2bf16 rounds to nearest even as float_to_bf16 does, but flushes float32
        // denormals to zero (vdpbf16ps takes denormal weights as zero anyway; no scale of a
        // real checkpoint makes a weight that small).
        v[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      }
      transpose_16x16(v);
      for (int64_t j = 0; j < kChunk; ++j) _mm512_storeu_si512(out + (c0 + j) * kP + g, v[j]);
    }
  }
}

// Rows [first, first + rows) of w, column pairs [j0, j0 + pairs), as
// [pair][row][2 values] (rows past `rows` and the column past cols zero).
void pack_panel(const WeightMatrix& w, int64_t first, int64_t rows, int64_t j0, int64_t pairs, uint32_t* out) {
  if (rows < kP) std::fill(out, out + pairs * kP, 0u);
  if (w.dtype != DType::BF16) return pack_widened(w, first, rows, j0, pairs, out);
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
  const uint32_t* panel[2];  // [pair][kP] each: rows 0-31 and (panel[1], or nullptr) rows 32-63
  const uint16_t* x;         // the first token's first column of the block; token t at x + t·ld
  int64_t ld, pairs;
  int64_t rows;  // valid rows of the panels
  float* y;      // the first token's output for the panel's first row
  int64_t ldy;
  bool accumulate;  // continue the chains from y (blocks after the first)
};

// T tokens × 16·V rows (V = 2: one panel, the last one of an odd count; 4: two
// panels side by side). Each output is still one chain over the pairs in order.
template <int T, int V>
DSV2_BF16_ATTR void TileBf16(const Tile& a) {
  __mmask16 m[V];
  for (int v = 0; v < V; ++v) {
    const int64_t valid = std::clamp<int64_t>(a.rows - 16 * v, 0, 16);
    m[v] = static_cast<__mmask16>(valid == 16 ? 0xFFFF : (1u << valid) - 1);
  }
  __m512 f[V][T];
  for (int v = 0; v < V; ++v)
    for (int t = 0; t < T; ++t)
      f[v][t] = a.accumulate ? _mm512_maskz_loadu_ps(m[v], a.y + t * a.ldy + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t j = 0; j < a.pairs; ++j) {
    __m512i w[V];
    for (int v = 0; v < V; ++v) w[v] = _mm512_loadu_si512(a.panel[v / 2] + j * kP + 16 * (v % 2));
    for (int t = 0; t < T; ++t) {
      int32_t pair;
      std::memcpy(&pair, a.x + t * a.ld + 2 * j, 4);
      const __m512i xb = _mm512_set1_epi32(pair);
      for (int v = 0; v < V; ++v) f[v][t] = _mm512_dpbf16_ps(f[v][t], (__m512bh)w[v], (__m512bh)xb);
    }
  }
  for (int v = 0; v < V; ++v)
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(a.y + t * a.ldy + 16 * v, m[v], f[v][t]);
}

// T tokens (float32) against one panel's 32 rows, from its pairs: out[t][i]
// for row i of the panel (rows past the matrix's come out 0). Per token and
// 16 rows, one chain over the even columns and one over the odd ones.
template <int T>
DSV2_BF16_ATTR void PanelDots(const uint32_t* panel, const float* x, int64_t ldx, int64_t cols, float out[][kP]) {
  const __m512i high = _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
  __m512 even[T][2], odd[T][2];
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2; ++h) even[t][h] = odd[t][h] = _mm512_setzero_ps();
  const int64_t full = cols / 2;
  for (int64_t j = 0; j < full; ++j) {
    __m512 we[2], wo[2];
    for (int h = 0; h < 2; ++h) {
      const __m512i v = _mm512_loadu_si512(panel + j * kP + 16 * h);
      we[h] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));  // the pair's first value: the low half
      wo[h] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
    }
    for (int t = 0; t < T; ++t) {
      const __m512 xe = _mm512_set1_ps(x[t * ldx + 2 * j]), xo = _mm512_set1_ps(x[t * ldx + 2 * j + 1]);
      for (int h = 0; h < 2; ++h) {
        even[t][h] = _mm512_fmadd_ps(we[h], xe, even[t][h]);
        odd[t][h] = _mm512_fmadd_ps(wo[h], xo, odd[t][h]);
      }
    }
  }
  if (cols % 2)  // the last column, alone in its pair
    for (int h = 0; h < 2; ++h) {
      const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(panel + full * kP + 16 * h), 16));
      for (int t = 0; t < T; ++t) even[t][h] = _mm512_fmadd_ps(we, _mm512_set1_ps(x[t * ldx + cols - 1]), even[t][h]);
    }
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2; ++h) _mm512_storeu_ps(out[t] + 16 * h, _mm512_add_ps(even[t][h], odd[t][h]));
}

void avx512_matvec_panels(const float* x, int64_t tokens, int64_t ldx, const WeightMatrix& w, int64_t first,
                          int64_t count, float* y, int64_t ldy) {
  constexpr int kTokens = 4;  // per pass over a panel: 16 chains
  void (*const kernels[kTokens + 1])(const uint32_t*, const float*, int64_t, int64_t, float[][kP]) = {
      nullptr, &PanelDots<1>, &PanelDots<2>, &PanelDots<3>, &PanelDots<4>};
  alignas(64) float out[kTokens][kP];
  for (int64_t p0 = first / kP * kP; p0 < first + count; p0 += kP) {
    const auto* panel = reinterpret_cast<const uint32_t*>(w.repacked_panel(p0, PanelFormat::kBf16));
    require(panel != nullptr, "gemm_bf16: a matrix read from its panels has none");
    const int64_t r0 = std::max(first, p0), r1 = std::min(first + count, p0 + kP);
    for (int64_t t0 = 0; t0 < tokens; t0 += kTokens) {
      const int64_t n = std::min<int64_t>(kTokens, tokens - t0);
      kernels[n](panel, x + t0 * ldx, ldx, w.cols, out);
      for (int64_t t = 0; t < n; ++t)
        std::copy(out[t] + (r0 - p0), out[t] + (r1 - p0), y + (t0 + t) * ldy + (r0 - first));
    }
  }
}
#undef DSV2_BF16_ATTR

void avx512_gemm(const Bf16Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y,
                 int64_t ldy) {
  void (*const narrow[kMaxTile + 1])(const Tile&) = {nullptr,         &TileBf16<1, 2>, &TileBf16<2, 2>, &TileBf16<3, 2>,
                                                     &TileBf16<4, 2>, &TileBf16<5, 2>, &TileBf16<6, 2>};
  void (*const wide[kMaxTile + 1])(const Tile&) = {nullptr,         &TileBf16<1, 4>, &TileBf16<2, 4>, &TileBf16<3, 4>,
                                                   &TileBf16<4, 4>, &TileBf16<5, 4>, &TileBf16<6, 4>};
  thread_local std::vector<uint32_t> buffer;  // grow-only: two panels
  buffer.resize(static_cast<size_t>(2 * kBlockPairs * kP));
  const int64_t pairs = x.ld / 2;
  // Blocks of columns, each output's chain continued from y: the same order as one pass.
  for (int64_t j0 = 0; j0 < pairs; j0 += kBlockPairs) {
    const int64_t n = std::min(kBlockPairs, pairs - j0);
    for (int64_t p0 = 0; p0 < count; p0 += 2 * kP) {
      const int64_t rows = std::min(2 * kP, count - p0);
      const uint32_t* packed[2] = {nullptr, nullptr};
      for (int k = 0; k * kP < rows; ++k) {
        // Repacked at load: the same layout over all of the row's pairs.
        packed[k] = reinterpret_cast<const uint32_t*>(w.repacked_panel(first + p0 + k * kP, PanelFormat::kBf16));
        if (packed[k]) {
          packed[k] += j0 * kP;
        } else {
          uint32_t* out = buffer.data() + k * kBlockPairs * kP;
          pack_panel(w, first + p0 + k * kP, std::min(kP, rows - k * kP), j0, n, out);
          packed[k] = out;
        }
      }
      const auto& kernels = packed[1] ? wide : narrow;
      for (int64_t t0 = 0; t0 < x.tokens; t0 += kMaxTile) {
        const int64_t tile = std::min<int64_t>(kMaxTile, x.tokens - t0);
        const Tile a{{packed[0], packed[1]}, x.values.data() + t0 * x.ld + 2 * j0, x.ld, n, rows, y + t0 * ldy + p0,
                     ldy, j0 > 0};
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

void matvec_bf16_panels(const float* x, int64_t tokens, int64_t ldx, const WeightMatrix& w, int64_t first,
                        int64_t count, float* y, int64_t ldy) {
  if (count <= 0 || tokens <= 0) return;
#if DSV2_GEMM_BF16_X86
  avx512_matvec_panels(x, tokens, ldx, w, first, count, y, ldy);  // (panels exist only where it runs)
#else
  (void)x, (void)ldx, (void)w, (void)y, (void)ldy;
  throw Error("gemm_bf16: bf16 panels on a CPU without AVX512-BF16");
#endif
}

bool gemm_bf16_takes(const WeightMatrix& w) {
  switch (w.dtype) {
    case DType::BF16: return true;
    case DType::I8:
    case DType::U8: return w.cols % kQuantBlock == 0;  // (the loader's rule)
    case DType::F8_E4M3: return w.scale_inv && w.cols % 32 == 0 && w.block_cols % 32 == 0;
    default: return false;
  }
}

bool gemm_bf16_native() { return use_avx512(); }

size_t gemm_bf16_panel_bytes(const WeightMatrix& w) {
  if (!gemm_bf16_takes(w) || !use_avx512()) return 0;
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
void matvec_bf16_panels(const float* x, int64_t tokens, int64_t ldx, const WeightMatrix& w, int64_t first,
                        int64_t count, float* y, int64_t ldy) {
  for (int64_t i = 0; i < count; ++i) {
    const auto* row = reinterpret_cast<const uint16_t*>(w.row_data(first + i));
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xt = x + t * ldx;
      float even = 0.0f, odd = 0.0f;
      for (int64_t c = 0; c + 1 < w.cols; c += 2) {
        even = std::fma(bf16_to_float(row[c]), xt[c], even);
        odd = std::fma(bf16_to_float(row[c + 1]), xt[c + 1], odd);
      }
      if (w.cols % 2) even = std::fma(bf16_to_float(row[w.cols - 1]), xt[w.cols - 1], even);
      y[t * ldy + i] = even + odd;
    }
  }
}
}  // namespace reference

}  // namespace dsv2
