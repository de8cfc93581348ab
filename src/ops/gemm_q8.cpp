// gemm_q8 (ops/gemm_q8.h), compiled once per SIMD target by Highway's
// foreach_target (this file includes itself once per target) and dispatched
// at run time.
//
// Rows are repacked per call, kGemmQ8PanelRows at a time, into a panel where
// each group of 4 bytes of one row sits next to the same 4 bytes of the other
// rows: [block][quad j of the block][row][4 bytes]. One 64-byte load then holds
// 4 columns of 16 rows, and `vpdpbusd` against the token's 4 activation bytes
// broadcast to every lane adds them into 16 per-row int32 sums: no horizontal
// reduction, each weight load serves every token of the tile, each activation
// broadcast 32 rows. Packing reads each weight once per call (at 512 prompt
// tokens that is <1% of the multiply-adds, yet ~18% of a q8 prefill's time:
// 32 rows read side by side wait on memory). With `--repack` (ops/repack.h)
// the panels are built once at load and read where they lie; the rows stay
// for the one-token kernels.
#include "ops/gemm_q8.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/gemm_q8.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#ifndef DSV2_GEMM_Q8_ONCE
#define DSV2_GEMM_Q8_ONCE
namespace dsv2::gemm_q8_detail {

constexpr int64_t kP = kGemmQ8PanelRows;
constexpr int32_t kResidualSteps = 256;  // see Q8Activations
constexpr float kResidualScale = 1.0f / kResidualSteps;
constexpr int64_t kQuads = kQuantBlock / 4;  // groups of 4 columns in a block
// Token tile: int32 sums and float32 accumulators of kMaxTile tokens × 32 rows
// stay in registers (4 × 4 zmm) with the two weight vectors.
constexpr int kMaxTile = 4;

std::atomic<bool> vnni_allowed{true};
std::atomic<int> activation_terms{2};

// One panel of up to kP rows in the interleaved layout, with its scales
// [block][row] (rows past `rows` zero).
struct Panel {
  std::vector<uint8_t> q;  // q8: the int8 values' bytes; q4: the values + 8 (0..15)
  std::vector<float> scales;
};

constexpr int64_t kPrefetchBlocks = 16;  // how far ahead pack_panel prefetches each row

// Bytes of a panel's values; its scales (float32) follow them in a repacked one.
inline int64_t panel_value_bytes(const WeightMatrix& w) { return w.cols / kQuantBlock * kQuantBlock * kP; }

inline void pack_panel(const WeightMatrix& w, int64_t first, int64_t rows, uint8_t* q, float* scales) {
  const int64_t blocks = w.cols / kQuantBlock;
  if (rows < kP) {  // the rows past `rows` contribute zeros (their outputs are not stored)
    std::fill(q, q + panel_value_bytes(w), w.is_q4() ? 8 : 0);
    std::fill(scales, scales + blocks * kP, 0.0f);
  }
  // Each row's bytes and scales located once: the loop below is only loads and
  // stores (a division per row and block in row_scales() was most of its time).
  const uint8_t* row[kP];
  BlockScales row_scale[kP];  // float16 ones are widened here, as they are packed
  for (int64_t r = 0; r < rows; ++r) {
    row[r] = reinterpret_cast<const uint8_t*>(w.row_data(first + r));
    row_scale[r] = w.row_scales(first + r);
  }
  const bool q4 = w.is_q4();
  const int64_t block_bytes = q4 ? kQuantBlock / 2 : kQuantBlock;
  // Block by block, so that the stores stay within the block's 1 KB of the panel
  // (row by row they swept the whole panel, past L1, 32 times: 22% of a q8 prefill).
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* out = q + b * kQuantBlock * kP;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* block = row[r] + b * block_bytes;
      // 32 rows read side by side are 32 streams, more than the hardware prefetchers follow
      __builtin_prefetch(block + kPrefetchBlocks * block_bytes);
      scales[b * kP + r] = row_scale[r][b];
      if (q4) {
        // bytes 4j..4j+3 of the block hold columns 4j.. in their low nibbles and 16 + 4j.. in their high ones
        for (int64_t j = 0; j < kQuads / 2; ++j) {
          uint32_t v;
          std::memcpy(&v, block + j * 4, 4);
          const uint32_t low = v & 0x0F0F0F0Fu, high = (v >> 4) & 0x0F0F0F0Fu;
          std::memcpy(out + j * kP * 4 + r * 4, &low, 4);
          std::memcpy(out + (j + kQuads / 2) * kP * 4 + r * 4, &high, 4);
        }
      } else {
        for (int64_t j = 0; j < kQuads; ++j) std::memcpy(out + j * kP * 4 + r * 4, block + j * 4, 4);
      }
    }
  }
}

// Σ_j wq·xq of one block of one row: the exact integer sum every kernel computes.
inline int32_t block_dot(const WeightMatrix& w, int64_t r, int64_t b, const int8_t* xq) {
  int32_t sum = 0;
  if (w.is_q4()) {
    const auto* q = reinterpret_cast<const uint8_t*>(w.row_data(r)) + b * kQuantBlock / 2;
    for (int64_t j = 0; j < kQuantBlock / 2; ++j)
      sum += ((q[j] & 0xF) - 8) * xq[j] + ((q[j] >> 4) - 8) * xq[j + kQuantBlock / 2];
  } else {
    const auto* q = reinterpret_cast<const int8_t*>(w.row_data(r)) + b * kQuantBlock;
    for (int64_t j = 0; j < kQuantBlock; ++j) sum += q[j] * xq[j];
  }
  return sum;
}

// The fixed accumulation order of gemm_q8.h, one output at a time.
inline void gemm_q8_scalar(const Q8Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y,
                           int64_t ldy) {
  const int64_t blocks = w.cols / kQuantBlock;
  for (int64_t i = 0; i < count; ++i) {
    const BlockScales ws = w.row_scales(first + i);
    for (int64_t t = 0; t < x.tokens; ++t) {
      const int8_t* xq = x.q.data() + t * x.cols;
      const float* xs = x.scales.data() + t * blocks;
      const int8_t* xr = x.terms == 2 ? x.residual.data() + t * x.cols : nullptr;
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const int32_t sum = block_dot(w, first + i, b, xq + b * kQuantBlock) * kResidualSteps +
                            (xr ? block_dot(w, first + i, b, xr + b * kQuantBlock) : 0);
        acc = std::fma(static_cast<float>(sum) * (xs[b] * kResidualScale), ws[b], acc);
      }
      y[t * ldy + i] = acc;
    }
  }
}

}  // namespace dsv2::gemm_q8_detail
#endif  // DSV2_GEMM_Q8_ONCE

HWY_BEFORE_NAMESPACE();
namespace dsv2 {
namespace HWY_NAMESPACE {
namespace detail = gemm_q8_detail;
using detail::kMaxTile;
using detail::kP;
using detail::kQuads;
using detail::kResidualScale;

#undef DSV2_GEMM_Q8_AVX2
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define DSV2_GEMM_Q8_AVX2 1
#else
#define DSV2_GEMM_Q8_AVX2 0
#endif
#undef DSV2_GEMM_Q8_VNNI
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL)
#define DSV2_GEMM_Q8_VNNI 1
#else
#define DSV2_GEMM_Q8_VNNI 0
#endif

// Arguments of one tile: T tokens starting at `t0` against one packed panel.
struct Tile {
  const uint8_t* pq;    // packed panel
  const float* ps;      // its scales [block][kP]
  const int8_t* xq;     // the first token's quantized values; token t at xq + t * cols
  const float* xs;      // [token][block]
  const int8_t* xr;     // residuals, laid out as xq
  const int32_t* xsum;  // [token][block]
  const int32_t* rsum;  // [token][block]
  int64_t cols, blocks;
  int64_t rows;  // valid rows of the panel (<= kP)
  float* y;      // the first token's outputs for the panel's first row
  int64_t ldy;
};

HWY_INLINE int32_t Quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if DSV2_GEMM_Q8_VNNI
// The AVX-512 target also runs on CPUs without VNNI (Skylake-X), so this one
// function carries the extra ISA itself and runs only where the CPU has it.
// (Highway 1.0.3's AVX3_DL target, which would include it, needs VBMI2, VAES,
// ... too and is not compiled by default.)
#define DSV2_VNNI_ATTR __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))

template <int T, bool kQ4, bool kTwoTerms>
DSV2_VNNI_ATTR void TileVnni(const Tile& a) {
  // Unsigned weights: q4's nibbles (value + 8) as stored; q8's values + 128
  // (an XOR of the sign bit). Each block's sums start at -bias·Σ_j xq.
  constexpr int32_t bias = kQ4 ? 8 : 128;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 f0[T], f1[T];
  for (int t = 0; t < T; ++t) f0[t] = _mm512_setzero_ps(), f1[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    __m512i s0[T], s1[T], r0[T], r1[T];  // sums with the quantized values, with the residuals
    for (int t = 0; t < T; ++t) {
      s0[t] = s1[t] = _mm512_set1_epi32(-bias * a.xsum[t * a.blocks + b]);
      if (kTwoTerms) r0[t] = r1[t] = _mm512_set1_epi32(-bias * a.rsum[t * a.blocks + b]);
    }
    const uint8_t* pw = a.pq + b * kQuantBlock * kP;
    const int8_t* px = a.xq + b * kQuantBlock;
    const int8_t* pr = kTwoTerms ? a.xr + b * kQuantBlock : nullptr;
#pragma GCC unroll 8
    for (int64_t j = 0; j < kQuads; ++j) {
      __m512i w0 = _mm512_loadu_si512(pw + j * kP * 4);
      __m512i w1 = _mm512_loadu_si512(pw + j * kP * 4 + 64);
      if (!kQ4) w0 = _mm512_xor_si512(w0, flip), w1 = _mm512_xor_si512(w1, flip);
      for (int t = 0; t < T; ++t) {
        // Four activation bytes as one int32 (memcpy, not Quad(): an always-inline
        // function of the Highway target cannot be inlined into this target for clang).
        int32_t x4;
        std::memcpy(&x4, px + t * a.cols + j * 4, 4);
        const __m512i xb = _mm512_set1_epi32(x4);
        s0[t] = _mm512_dpbusd_epi32(s0[t], w0, xb);
        s1[t] = _mm512_dpbusd_epi32(s1[t], w1, xb);
        if (kTwoTerms) {
          int32_t r4;
          std::memcpy(&r4, pr + t * a.cols + j * 4, 4);
          const __m512i rb = _mm512_set1_epi32(r4);
          r0[t] = _mm512_dpbusd_epi32(r0[t], w0, rb);
          r1[t] = _mm512_dpbusd_epi32(r1[t], w1, rb);
        }
      }
    }
    const __m512 ws0 = _mm512_loadu_ps(a.ps + b * kP), ws1 = _mm512_loadu_ps(a.ps + b * kP + 16);
    for (int t = 0; t < T; ++t) {
      // (one term: float(S)·xs is float(256·S)·(xs/256) bit for bit, the reference's form)
      const __m512 xs = _mm512_set1_ps(kTwoTerms ? a.xs[t * a.blocks + b] * kResidualScale : a.xs[t * a.blocks + b]);
      const __m512i c0 = kTwoTerms ? _mm512_add_epi32(_mm512_slli_epi32(s0[t], 8), r0[t]) : s0[t];
      const __m512i c1 = kTwoTerms ? _mm512_add_epi32(_mm512_slli_epi32(s1[t], 8), r1[t]) : s1[t];
      f0[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(c0), xs), ws0, f0[t]);
      f1[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(c1), xs), ws1, f1[t]);
    }
  }
  const auto m0 = static_cast<__mmask16>(a.rows >= 16 ? 0xFFFF : (1u << a.rows) - 1);
  const auto m1 = static_cast<__mmask16>(a.rows >= 32 ? 0xFFFF : a.rows <= 16 ? 0 : (1u << (a.rows - 16)) - 1);
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(a.y + t * a.ldy, m0, f0[t]);
    _mm512_mask_storeu_ps(a.y + t * a.ldy + 16, m1, f1[t]);
  }
}
#undef DSV2_VNNI_ATTR
#endif

#if DSV2_GEMM_Q8_AVX2
// vpmaddubsw takes u8 × s8 pairs into saturating int16: q4's stored nibbles
// (<= 15) pair with the int8 activations as they are (|pair| <= 2·15·127); q8
// goes as |w| × sign(w)·x (|pair| <= 2·127·127 < 32767), without a bias. The
// panel is done 8 rows (one ymm) at a time.
template <int T, bool kQ4, bool kTwoTerms>
void TileAvx2(const Tile& a) {
  const __m256i ones = _mm256_set1_epi16(1);
  constexpr int32_t bias = kQ4 ? 8 : 0;
  for (int64_t r8 = 0; r8 < std::min<int64_t>(a.rows, kP); r8 += 8) {
    __m256 f[T];
    for (int t = 0; t < T; ++t) f[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < a.blocks; ++b) {
      __m256i s[T], r[T];
      for (int t = 0; t < T; ++t) {
        s[t] = _mm256_set1_epi32(-bias * a.xsum[t * a.blocks + b]);
        r[t] = kTwoTerms ? _mm256_set1_epi32(-bias * a.rsum[t * a.blocks + b]) : _mm256_setzero_si256();
      }
      const uint8_t* pw = a.pq + b * kQuantBlock * kP + r8 * 4;
      const int8_t* px = a.xq + b * kQuantBlock;
      const int8_t* pr = kTwoTerms ? a.xr + b * kQuantBlock : nullptr;
      for (int64_t j = 0; j < kQuads; ++j) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pw + j * kP * 4));
        const __m256i uw = kQ4 ? w : _mm256_sign_epi8(w, w);
        for (int t = 0; t < T; ++t) {
          const __m256i xb = _mm256_set1_epi32(Quad(px + t * a.cols + j * 4));
          const __m256i sx = kQ4 ? xb : _mm256_sign_epi8(xb, w);
          s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(uw, sx), ones));
          if (kTwoTerms) {
            const __m256i rb = _mm256_set1_epi32(Quad(pr + t * a.cols + j * 4));
            const __m256i sr = kQ4 ? rb : _mm256_sign_epi8(rb, w);
            r[t] = _mm256_add_epi32(r[t], _mm256_madd_epi16(_mm256_maddubs_epi16(uw, sr), ones));
          }
        }
      }
      const __m256 ws = _mm256_loadu_ps(a.ps + b * kP + r8);
      for (int t = 0; t < T; ++t) {
        const __m256i c = kTwoTerms ? _mm256_add_epi32(_mm256_slli_epi32(s[t], 8), r[t]) : s[t];
        const float xs = kTwoTerms ? a.xs[t * a.blocks + b] * kResidualScale : a.xs[t * a.blocks + b];
        f[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(xs)), ws, f[t]);
      }
    }
    const int64_t n = std::min<int64_t>(8, a.rows - r8);
    for (int t = 0; t < T; ++t) {
      if (n == 8) {
        _mm256_storeu_ps(a.y + t * a.ldy + r8, f[t]);
      } else {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, f[t]);
        std::copy(lanes, lanes + n, a.y + t * a.ldy + r8);
      }
    }
  }
}
#endif

// The tile kernel for T tokens at this target (nullptr: none, use the portable loop).
template <int T>
void (*TileKernel(bool q4, bool two_terms))(const Tile&) {
#if DSV2_GEMM_Q8_VNNI
  if (detail::vnni_allowed.load(std::memory_order_relaxed) && cpu_has_avx512_vnni()) {
    if (two_terms) return q4 ? &TileVnni<T, true, true> : &TileVnni<T, false, true>;
    return q4 ? &TileVnni<T, true, false> : &TileVnni<T, false, false>;
  }
#endif
#if DSV2_GEMM_Q8_AVX2
  if (two_terms) return q4 ? &TileAvx2<T, true, true> : &TileAvx2<T, false, true>;
  return q4 ? &TileAvx2<T, true, false> : &TileAvx2<T, false, false>;
#else
  (void)q4, (void)two_terms;
  return nullptr;
#endif
}

void GemmQ8(const Q8Activations* x, const WeightMatrix* w, int64_t first, int64_t count, float* y, int64_t ldy) {
  const bool q4 = w->is_q4(), two = x->terms == 2;
  if (TileKernel<1>(q4, two) == nullptr) {
    detail::gemm_q8_scalar(*x, *w, first, count, y, ldy);
    return;
  }
  void (*const kernels[kMaxTile + 1])(const Tile&) = {nullptr, TileKernel<1>(q4, two), TileKernel<2>(q4, two),
                                                      TileKernel<3>(q4, two), TileKernel<4>(q4, two)};
  thread_local std::vector<detail::Panel> panels;  // grow-only
  const int64_t blocks = w->cols / kQuantBlock;
  // Tokens in chunks whose activation terms fit in L2 (~256 KB) next to a
  // group of panels (~256 KB): a 512-token prompt's 2 MB of them streamed from
  // L3 once per panel ran at half the speed of 48 tokens. Each group of panels
  // is packed once and serves every chunk (packed per chunk instead, the
  // weights of a 512-token product were read and repacked 8 times).
  const int64_t chunk = std::max<int64_t>(kMaxTile, ((int64_t(1) << 17) / x->cols) / kMaxTile * kMaxTile);
  const int64_t group = std::max<int64_t>(1, (int64_t(1) << 18) / (x->cols * kP));
  if (static_cast<int64_t>(panels.size()) < group) panels.resize(static_cast<size_t>(group));
  for (int64_t g0 = 0; g0 < count; g0 += group * kP) {
    const int64_t group_end = std::min(count, g0 + group * kP);
    for (int64_t p0 = g0, i = 0; p0 < group_end; p0 += kP, ++i)
      if (!w->repacked_panel(first + p0, PanelFormat::kQ8)) {
        detail::Panel& panel = panels[static_cast<size_t>(i)];
        panel.q.resize(static_cast<size_t>(detail::panel_value_bytes(*w)));
        panel.scales.resize(static_cast<size_t>(blocks * kP));
        detail::pack_panel(*w, first + p0, std::min(kP, count - p0), panel.q.data(), panel.scales.data());
      }
    for (int64_t c0 = 0; c0 < x->tokens; c0 += chunk) {
      const int64_t c1 = std::min(x->tokens, c0 + chunk);
      for (int64_t p0 = g0, i = 0; p0 < group_end; p0 += kP, ++i) {
        // Panels repacked at load (ops/repack.h) are read where they lie.
        const std::byte* repacked = w->repacked_panel(first + p0, PanelFormat::kQ8);
        const detail::Panel& panel = panels[static_cast<size_t>(i)];
        const auto* pq = repacked ? reinterpret_cast<const uint8_t*>(repacked) : panel.q.data();
        const float* ps =
            repacked ? reinterpret_cast<const float*>(pq + detail::panel_value_bytes(*w)) : panel.scales.data();
        for (int64_t t0 = c0; t0 < c1; t0 += kMaxTile) {
          const int64_t tile = std::min<int64_t>(kMaxTile, c1 - t0);
          const Tile a{pq,
                       ps,
                       x->q.data() + t0 * x->cols,
                       x->scales.data() + t0 * blocks,
                       two ? x->residual.data() + t0 * x->cols : nullptr,
                       x->sums.data() + t0 * blocks,
                       two ? x->residual_sums.data() + t0 * blocks : nullptr,
                       x->cols,
                       blocks,
                       std::min(kP, count - p0),
                       y + t0 * ldy + p0,
                       ldy};
          kernels[tile](a);
        }
      }
    }
  }
}

const char* KernelName() {
#if DSV2_GEMM_Q8_VNNI
  if (detail::vnni_allowed.load(std::memory_order_relaxed) && cpu_has_avx512_vnni()) return "avx512-vnni";
#endif
#if DSV2_GEMM_Q8_AVX2
  return "avx2-maddubs";
#else
  return "portable";
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv2
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv2 {

HWY_EXPORT(GemmQ8);
HWY_EXPORT(KernelName);

void Q8Activations::quantize(const float* x, int64_t n_tokens, int64_t n_cols, int n_terms) {
  require(n_terms == 1 || n_terms == 2, "gemm_q8: activations take 1 or 2 int8 terms");
  tokens = n_tokens, cols = n_cols, terms = n_terms;
  const int64_t blocks = cols / kQuantBlock;
  const bool two = terms == 2;
  q.resize(static_cast<size_t>(tokens * cols));
  scales.resize(static_cast<size_t>(tokens * blocks));
  sums.resize(static_cast<size_t>(tokens * blocks));
  residual.resize(two ? static_cast<size_t>(tokens * cols) : 0);
  residual_sums.resize(two ? static_cast<size_t>(tokens * blocks) : 0);
  // ~0.35 ns a value on one core: a second thread pays off only for large batches
  // (a parallel region costs microseconds, milliseconds on a loaded machine).
  parallel_for(tokens, std::max<int64_t>(1, (int64_t(1) << 19) / std::max<int64_t>(cols, 1)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (two)
        quantize_activation_q8_residual(x + t * cols, cols, q.data() + t * cols, residual.data() + t * cols,
                                        scales.data() + t * blocks);
      else
        quantize_activation_q8(x + t * cols, cols, q.data() + t * cols, scales.data() + t * blocks);
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t at = t * cols + b * kQuantBlock;
        int32_t s = 0, rs = 0;
        for (int64_t j = 0; j < kQuantBlock; ++j) s += q[at + j], rs += two ? residual[at + j] : 0;
        sums[t * blocks + b] = s;
        if (two) residual_sums[t * blocks + b] = rs;
      }
    }
  });
}

void gemm_q8(const Q8Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(GemmQ8)(&x, &w, first, count, y, ldy);
}

const char* gemm_q8_kernel() { return HWY_DYNAMIC_DISPATCH(KernelName)(); }

size_t gemm_q8_panel_bytes(const WeightMatrix& w) {
  // The portable kernel reads rows; the others share one panel layout.
  if (!is_block_quantized(w.dtype) || std::strcmp(gemm_q8_kernel(), "portable") == 0) return 0;
  return static_cast<size_t>(gemm_q8_detail::panel_value_bytes(w) + w.cols / kQuantBlock * gemm_q8_detail::kP * 4);
}

void pack_gemm_q8_panel(const WeightMatrix& w, int64_t index, std::byte* out) {
  using gemm_q8_detail::kP;
  require(gemm_q8_panel_bytes(w) > 0 && index >= 0 && index * kP < w.rows, "gemm_q8: no such panel to repack");
  auto* q = reinterpret_cast<uint8_t*>(out);
  gemm_q8_detail::pack_panel(w, index * kP, std::min(kP, w.rows - index * kP), q,
                             reinterpret_cast<float*>(q + gemm_q8_detail::panel_value_bytes(w)));
}

void allow_gemm_q8_vnni(bool allowed) { gemm_q8_detail::vnni_allowed.store(allowed); }

void set_gemm_q8_activation_terms(int terms) {
  require(terms == 1 || terms == 2, "gemm_q8: activations take 1 or 2 int8 terms");
  gemm_q8_detail::activation_terms.store(terms);
}
int gemm_q8_activation_terms() { return gemm_q8_detail::activation_terms.load(); }

namespace reference {
void gemm_q8(const Q8Activations& x, const WeightMatrix& w, int64_t first, int64_t count, float* y, int64_t ldy) {
  gemm_q8_detail::gemm_q8_scalar(x, w, first, count, y, ldy);
}
}  // namespace reference

}  // namespace dsv2
#endif  // HWY_ONCE
