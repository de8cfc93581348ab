// The row kernels of kernels.h, compiled once per SIMD target by Highway's
// foreach_target (this file includes itself once per target) and dispatched at
// run time. Each loop keeps several independent accumulators so that the FMA
// latency is hidden; the order of summation therefore differs from the scalar
// reference by rounding only.
#include "ops/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv2 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::ScalableTag<float>;

// Decoding streams each weight once per token from memory: the integer row
// loops prefetch the cache lines kPrefetchBytes ahead of where they read (past
// a row's end that is the next row, which a matvec reads next). With the
// hardware prefetcher alone one core streamed q8 rows at ~15 GB/s here; with
// this, 20-23 GB/s (docs/PERFORMANCE.md). The bfloat16 and fp8 loops measured
// no gain (fp8 is compute-bound) or a loss (bf16), so they do not prefetch.
constexpr int64_t kPrefetchBytes = 4096;
constexpr int64_t kCacheLine = 64;

// Prefetches [p + kPrefetchBytes, p + kPrefetchBytes + bytes).
HWY_INLINE void PrefetchAhead(const void* p, int64_t bytes) {
  const char* ahead = static_cast<const char*>(p) + kPrefetchBytes;
  for (int64_t line = 0; line < bytes; line += kCacheLine) hwy::Prefetch(ahead + line);
}

// bfloat16 is the top half of a float32: widen to 32 bits and shift.
template <class D>
HWY_INLINE hn::Vec<D> LoadBF16(D df, const uint16_t* p) {
  const hn::RebindToUnsigned<D> du32;
  const hn::Rebind<uint16_t, D> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
}

HWY_INLINE hn::Vec<FloatTag> LoadWeights(FloatTag df, const float* w) { return hn::LoadU(df, w); }
HWY_INLINE hn::Vec<FloatTag> LoadWeights(FloatTag df, const uint16_t* w) { return LoadBF16(df, w); }
HWY_INLINE float WeightValue(float w) { return w; }
HWY_INLINE float WeightValue(uint16_t w) { return bf16_to_float(w); }

// Σ x[i]·w[i] for float32 or bfloat16 weights, four accumulators in flight.
template <class W>
float DotWith(const float* x, const W* w, int64_t n) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(df, x + i), LoadWeights(df, w + i), s0);
    s1 = hn::MulAdd(hn::LoadU(df, x + i + N), LoadWeights(df, w + i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(df, x + i + 2 * N), LoadWeights(df, w + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(df, x + i + 3 * N), LoadWeights(df, w + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(df, x + i), LoadWeights(df, w + i), s0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) sum += x[i] * WeightValue(w[i]);
  return sum;
}

float DotF32(const float* x, const float* w, int64_t n) { return DotWith(x, w, n); }
float DotBF16(const float* x, const uint16_t* w, int64_t n) { return DotWith(x, w, n); }

// q8/q4 block scales as stored (ops/block_scales.h): float32, or the bits of
// IEEE float16, read in place. The q8/q4 kernels are templates over the two,
// instantiated for both; WithScales picks one per call (a row or a matvec).
HWY_INLINE float ScaleAt(const float* s, int64_t b) { return s[b]; }
HWY_INLINE float ScaleAt(const uint16_t* s, int64_t b) { return f16_to_float(s[b]); }

template <class F>
HWY_INLINE auto WithScales(BlockScales scales, const F& f) {
  return scales.f16 ? f(scales.f16_bits()) : f(scales.f32());
}

// Σ_b scales[b]·block_dot(b) over `blocks` blocks, two in flight.
template <class S, class BlockDot>
HWY_INLINE float ScaledBlockSum(const S* scales, int64_t blocks, const BlockDot& block_dot) {
  const FloatTag df;
  auto s0 = hn::Zero(df), s1 = hn::Zero(df);
  int64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    s0 = hn::MulAdd(block_dot(b), hn::Set(df, ScaleAt(scales, b)), s0);
    s1 = hn::MulAdd(block_dot(b + 1), hn::Set(df, ScaleAt(scales, b + 1)), s1);
  }
  for (; b < blocks; ++b) s0 = hn::MulAdd(block_dot(b), hn::Set(df, ScaleAt(scales, b)), s0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
}

// Σ x[j]·q[j] over one block of kQuantBlock int8 values, unscaled.
template <class D>
HWY_INLINE hn::Vec<D> BlockDotQ8(D df, const float* x, const int8_t* q) {
  const hn::RebindToSigned<D> di32;
  const hn::Rebind<int8_t, D> di8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto sum = hn::Zero(df);
  for (int64_t j = 0; j < kQuantBlock; j += N)
    sum = hn::MulAdd(hn::LoadU(df, x + j), hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, q + j))), sum);
  return sum;
}

float DotQ8(const float* x, const int8_t* q, BlockScales scales, int64_t n) {
  const FloatTag df;
  return WithScales(scales, [&](const auto* s) HWY_ATTR {
    return ScaledBlockSum(s, n / kQuantBlock,
                          [&](int64_t b) HWY_ATTR { return BlockDotQ8(df, x + b * kQuantBlock, q + b * kQuantBlock); });
  });
}

// Lanes(df) bytes of a q4 block as floats: `low` the values their low nibbles
// hold, `high` those of their high nibbles (each stored as q + 8).
template <class D>
HWY_INLINE void LoadQ4Values(D df, const uint8_t* q, hn::Vec<D>& low, hn::Vec<D>& high) {
  const hn::RebindToSigned<D> di32;
  const hn::RebindToUnsigned<D> du32;
  const hn::Rebind<uint8_t, D> du8;
  const auto bytes = hn::PromoteTo(du32, hn::LoadU(du8, q));
  const auto offset = hn::Set(di32, 8);
  low = hn::ConvertTo(df, hn::Sub(hn::BitCast(di32, hn::And(bytes, hn::Set(du32, 0xFu))), offset));
  high = hn::ConvertTo(df, hn::Sub(hn::BitCast(di32, hn::ShiftRight<4>(bytes)), offset));
}

// One block of q4: the 16 bytes hold values 0..15 in their low nibbles and
// 16..31 in their high nibbles.
template <class D>
HWY_INLINE hn::Vec<D> BlockDotQ4(D df, const float* x, const uint8_t* q) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto sum_low = hn::Zero(df), sum_high = hn::Zero(df);
  for (int64_t j = 0; j < kQuantBlock / 2; j += N) {
    hn::Vec<D> low, high;
    LoadQ4Values(df, q + j, low, high);
    sum_low = hn::MulAdd(hn::LoadU(df, x + j), low, sum_low);
    sum_high = hn::MulAdd(hn::LoadU(df, x + j + kQuantBlock / 2), high, sum_high);
  }
  return hn::Add(sum_low, sum_high);
}

float DotQ4(const float* x, const uint8_t* q, BlockScales scales, int64_t n) {
  const FloatTag df;
  return WithScales(scales, [&](const auto* s) HWY_ATTR {
    return ScaledBlockSum(
        s, n / kQuantBlock, [&](int64_t b) HWY_ATTR { return BlockDotQ4(df, x + b * kQuantBlock, q + b * kQuantBlock / 2); });
  });
}

// float8 e4m3fn to float32 without a table: the 7 magnitude bits shifted into
// a float32's exponent and mantissa fields give 2^-120 times the value (for
// subnormal codes too, as float32 subnormals); the sign bit moves to bit 31.
// Callers multiply by 2^120 once per block, folded into the block's scale.
constexpr float kF8Rebias = 0x1p120f;
template <class D>
HWY_INLINE hn::Vec<D> LoadF8Times2PowMinus120(D df, const uint8_t* p) {
  const hn::RebindToUnsigned<D> du32;
  const hn::Rebind<uint8_t, D> du8;
  const auto b = hn::PromoteTo(du32, hn::LoadU(du8, p));
  const auto bits = hn::Or(hn::ShiftLeft<20>(hn::And(b, hn::Set(du32, 0x7Fu))), hn::ShiftLeft<24>(hn::And(b, hn::Set(du32, 0x80u))));
  return hn::BitCast(df, bits);
}

float DotF8(const float* x, const uint8_t* w, const float* scales, int64_t n, int64_t block) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto total = hn::Zero(df);
  float tail = 0.0f;
  for (int64_t c0 = 0, b = 0; c0 < n; c0 += block, ++b) {
    const int64_t len = std::min(block, n - c0);
    auto s0 = hn::Zero(df), s1 = hn::Zero(df);
    int64_t j = 0;
    for (; j + 2 * N <= len; j += 2 * N) {
      s0 = hn::MulAdd(hn::LoadU(df, x + c0 + j), LoadF8Times2PowMinus120(df, w + c0 + j), s0);
      s1 = hn::MulAdd(hn::LoadU(df, x + c0 + j + N), LoadF8Times2PowMinus120(df, w + c0 + j + N), s1);
    }
    for (; j + N <= len; j += N) s0 = hn::MulAdd(hn::LoadU(df, x + c0 + j), LoadF8Times2PowMinus120(df, w + c0 + j), s0);
    total = hn::MulAdd(hn::Add(s0, s1), hn::Set(df, scales[b] * kF8Rebias), total);
    for (; j < len; ++j) tail += scales[b] * x[c0 + j] * fp8_e4m3_to_float(w[c0 + j]);
  }
  return hn::GetLane(hn::SumOfLanes(df, total)) + tail;
}

void DequantizeF8(const uint8_t* w, const float* scales, int64_t n, int64_t block, float* out) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t c0 = 0, b = 0; c0 < n; c0 += block, ++b) {
    const int64_t len = std::min(block, n - c0);
    const auto scale = hn::Set(df, scales[b]);
    int64_t j = 0;
    for (; j + N <= len; j += N)
      hn::StoreU(hn::Mul(scale, hn::Mul(LoadF8Times2PowMinus120(df, w + c0 + j), hn::Set(df, kF8Rebias))), df, out + c0 + j);
    for (; j < len; ++j) out[c0 + j] = scales[b] * fp8_e4m3_to_float(w[c0 + j]);
  }
}

// Integer kernels: activations quantized to int8 per block of 32 (scale xs),
// weights q8 or q4; Σ x·w = Σ_b xs[b]·ws[b]·Σ_j xq[j]·wq[j] with the inner sum
// exact in int32. On AVX2 the q8 inner sum is vpmaddubsw on |w| and sign(w)·x
// (|w|, |x| <= 127, so the pairwise int16 sums cannot saturate) and the q4 one
// takes the unsigned nibbles directly (DotQ8Q4UnsignedAvx2); elsewhere a
// plain loop the compiler vectorises for the target. The 256-bit kernels serve
// every x86 target from AVX2 up: AVX-512 CPUs run them as they are, and the
// portable loops were 4× slower there (4-layer V2-Lite q8 decode 8.9 tok/s on a
// Sapphire Rapids VM, 89% of the time in them).
#undef DSV2_AVX2_INTEGER_KERNELS
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define DSV2_AVX2_INTEGER_KERNELS 1
#else
#define DSV2_AVX2_INTEGER_KERNELS 0
#endif
#if DSV2_AVX2_INTEGER_KERNELS
HWY_INLINE float SumOfLanesAvx2(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// Σ_b ws[b]·xs[b]·Σ(lanes of block_dot(b)), where block_dot(b) returns the
// eight int32 partial sums of block b. Two rounds of unpack-and-add fold four
// blocks into one vector (lanes [b0 b1 b2 b3 | b0 b1 b2 b3]), so one conversion
// and one FMA serve four blocks, against the block scales multiplied eight at
// a time. Converting and scaling every block on its own (one scalar multiply,
// a broadcast, a conversion and an FMA per block) made q4 decode
// compute-bound here; vphaddd (3 uops each) in place of the unpacks was the
// bottleneck of the next version (llvm-mca, znver3).
HWY_INLINE __m256i SumLanesOfFourAvx2(__m256i a, __m256i b, __m256i c, __m256i d) {
  // [a0+a2 b0+b2 a1+a3 b1+b3 | a4+a6 b4+b6 a5+a7 b5+b7], likewise for c, d
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

// Eight block scales as float32: float16 ones widened by vcvtph2ps (F16C is
// part of Highway's AVX2 target and of every target above it).
HWY_INLINE __m256 LoadScales8Avx2(const float* s) { return _mm256_loadu_ps(s); }
HWY_INLINE __m256 LoadScales8Avx2(const uint16_t* s) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}

template <class S, class BlockDot>
HWY_INLINE float ScaledBlockSumAvx2(const float* xs, const S* ws, int64_t blocks, const BlockDot& block_dot,
                                    const void* weights, int64_t block_bytes) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    PrefetchAhead(static_cast<const char*>(weights) + b * block_bytes, 8 * block_bytes);
    const __m256 d = _mm256_mul_ps(LoadScales8Avx2(ws + b), _mm256_loadu_ps(xs + b));
    const __m256i low = SumLanesOfFourAvx2(block_dot(b), block_dot(b + 1), block_dot(b + 2), block_dot(b + 3));
    const __m256i high = SumLanesOfFourAvx2(block_dot(b + 4), block_dot(b + 5), block_dot(b + 6), block_dot(b + 7));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(low), _mm256_permute2f128_ps(d, d, 0x00), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(high), _mm256_permute2f128_ps(d, d, 0x11), acc1);
  }
  for (; b < blocks; ++b)
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(b)), _mm256_set1_ps(ScaleAt(ws, b) * xs[b]), acc0);
  return SumOfLanesAvx2(_mm256_add_ps(acc0, acc1));
}

// q8 block: vpmaddubsw on |w| and sign(w)·x (|w|, |x| <= 127, so the pairwise
// int16 sums cannot saturate), then pairs to int32.
template <class S>
HWY_INLINE float DotQ8Q8Avx2(const int8_t* xq, const float* xs, const int8_t* wq, const S* ws, int64_t blocks) {
  const __m256i ones = _mm256_set1_epi16(1);
  return ScaledBlockSumAvx2(xs, ws, blocks, [&](int64_t k) HWY_ATTR {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + k * kQuantBlock));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k * kQuantBlock));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
  }, wq, kQuantBlock);
}
#endif

HWY_INLINE int32_t BlockDotQ8Q8Portable(const int8_t* x, const int8_t* w) {
  int32_t sum = 0;
  for (int64_t j = 0; j < kQuantBlock; ++j) sum += static_cast<int32_t>(x[j]) * w[j];
  return sum;
}
HWY_INLINE int32_t BlockDotQ8Q4Portable(const int8_t* x, const uint8_t* w) {
  int32_t sum = 0;
  for (int64_t j = 0; j < kQuantBlock / 2; ++j) {
    sum += static_cast<int32_t>(x[j]) * ((w[j] & 0xF) - 8);
    sum += static_cast<int32_t>(x[j + kQuantBlock / 2]) * ((w[j] >> 4) - 8);
  }
  return sum;
}

template <class S>
HWY_INLINE float DotQ8Q8With(const int8_t* xq, const float* xs, const int8_t* wq, const S* ws, int64_t n) {
  const int64_t blocks = n / kQuantBlock;
#if DSV2_AVX2_INTEGER_KERNELS
  return DotQ8Q8Avx2(xq, xs, wq, ws, blocks);
#else
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b)
    sum += ScaleAt(ws, b) * xs[b] * static_cast<float>(BlockDotQ8Q8Portable(xq + b * kQuantBlock, wq + b * kQuantBlock));
  return sum;
#endif
}

float DotQ8Q8(const int8_t* xq, const float* xs, const int8_t* wq, BlockScales ws, int64_t n) {
  return WithScales(ws, [&](const auto* s) HWY_ATTR { return DotQ8Q8With(xq, xs, wq, s, n); });
}

// offsets[b] = 8·xs[b]·Σ_j xq[b][j]: what the stored "+ 8" of q4 nibbles adds
// to block b of a dot with this activation (see DotQ8Q4UnsignedAvx2).
HWY_INLINE void Q4Offsets(const int8_t* xq, const float* xs, int64_t blocks, float* offsets) {
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t sum = 0;
    for (int64_t j = 0; j < kQuantBlock; ++j) sum += xq[b * kQuantBlock + j];
    offsets[b] = 8.0f * xs[b] * static_cast<float>(sum);
  }
}

#if DSV2_AVX2_INTEGER_KERNELS
// q4 rows without the sign trick: the stored nibbles u = q + 8 are unsigned, so
// vpmaddubsw(u, x) is Σ(q + 8)·x exactly (pairs stay within 2·15·127). The
// 8·Σx part is taken off once per row as Σ_b ws[b]·offsets[b], with
// offsets[b] = 8·xs[b]·Σ_j xq[b][j] computed once per activation. The 16 bytes
// of a block are loaded into both 128-bit halves; shifting the upper half's
// 32-bit lanes right by 4 brings the high nibbles down, and one mask keeps the
// low nibble of every byte: values 0..15 below, 16..31 above, as stored.
template <class S>
HWY_INLINE float DotQ8Q4UnsignedAvx2(const int8_t* xq, const float* xs, const float* offsets, const uint8_t* wq,
                                     const S* ws, int64_t blocks) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i shifts = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const __m256i ones = _mm256_set1_epi16(1);
  const float sum = ScaledBlockSumAvx2(xs, ws, blocks, [&](int64_t k) HWY_ATTR {
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wq + k * kQuantBlock / 2)));
    const __m256i u = _mm256_and_si256(_mm256_srlv_epi32(bytes, shifts), mask);
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k * kQuantBlock));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones);
  }, wq, kQuantBlock / 2);
  __m256 offset = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) offset = _mm256_fmadd_ps(LoadScales8Avx2(ws + b), _mm256_loadu_ps(offsets + b), offset);
  float tail = 0.0f;
  for (; b < blocks; ++b) tail += ScaleAt(ws, b) * offsets[b];
  return sum - SumOfLanesAvx2(offset) - tail;
}
#endif

#undef DSV2_Q4_VNNI
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL)
#define DSV2_Q4_VNNI 1
#else
#define DSV2_Q4_VNNI 0
#endif
#if DSV2_Q4_VNNI
// q4 rows with AVX512-VNNI (ymm `vpdpbusd`, u8 × s8 into int32), two blocks per
// 32-byte load: the low nibbles of both blocks (values 0..15 of each) are one
// mask away, the high ones (16..31) a shift and a mask, against an activation
// laid out to match once per matvec (InterleaveQ4Activation). Each pair's sums
// land in one register, [block b: 4 lanes | block b+1: 4 lanes], and four
// pairs fold into one vector of 8 block sums (blocks in the order 0 2 4 6 1 3
// 5 7, the scales permuted to match). The AVX2 kernel above spends a
// broadcast, a shift, a mask, vpmaddubsw and vpmaddwd on each block.
// The AVX-512 target also runs on CPUs without VNNI, so this carries the ISA
// itself and runs where the CPU has it; everything it calls carries the same
// attribute (clang does not inline the Highway target's always-inline helpers
// into a function of another target).
#define DSV2_Q4_VNNI_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))

// Per pair of blocks (b, b + 1): [x_b 0..15, x_b+1 0..15, x_b 16..31, x_b+1 16..31].
HWY_INLINE void InterleaveQ4Activation(const int8_t* xq, int64_t blocks, int8_t* out) {
  for (int64_t b = 0; b + 2 <= blocks; b += 2) {
    const int8_t* x = xq + b * kQuantBlock;
    int8_t* o = out + b * kQuantBlock;
    std::copy(x, x + 16, o);
    std::copy(x + 32, x + 48, o + 16);
    std::copy(x + 16, x + 32, o + 32);
    std::copy(x + 48, x + 64, o + 48);
  }
}

DSV2_Q4_VNNI_ATTR inline __m256i PairSumsVnni(const uint8_t* w, const int8_t* xi) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i low = _mm256_and_si256(bytes, mask), high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), low, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi)));
  return _mm256_dpbusd_epi32(s, high, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + 32)));
}

// As SumLanesOfFourAvx2: four pairs' sums into the eight block sums.
DSV2_Q4_VNNI_ATTR inline __m256i FoldPairsVnni(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

DSV2_Q4_VNNI_ATTR inline float SumOfLanesVnni(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// Eight block scales as float32 (float16 ones widened); with `valid` < 8 the
// lanes past it are 0 and nothing past ws[valid - 1] is read.
DSV2_Q4_VNNI_ATTR inline __m256 LoadScalesVnni(const float* s, int valid) {
  return _mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << valid) - 1), s);
}
DSV2_Q4_VNNI_ATTR inline __m256 LoadScalesVnni(const uint16_t* s, int valid) {
  return _mm256_cvtph_ps(_mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << valid) - 1), s));
}

// Σ_b ws[b]·xs[b]·Σ_j q·x over a q4 row, xi the interleaved activation, the
// "+ 8" of the stored nibbles taken off through offsets as in DotQ8Q4UnsignedAvx2.
// Blocks go 8 at a time; the last 2, 4 or 6 as pairs with the rest zero.
template <class S>
DSV2_Q4_VNNI_ATTR float DotQ8Q4Vnni(const int8_t* xq, const int8_t* xi, const float* xs, const float* offsets,
                                    const uint8_t* wq, const S* ws, int64_t blocks) {
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256 acc = _mm256_setzero_ps(), offset = _mm256_setzero_ps();
  const int64_t paired = blocks / 2 * 2;
  for (int64_t b = 0; b < paired; b += 8) {
    const int valid = static_cast<int>(std::min<int64_t>(8, paired - b));
    const uint8_t* w = wq + b * kQuantBlock / 2;
    for (int64_t line = 0; line < 8 * kQuantBlock / 2; line += kCacheLine) __builtin_prefetch(w + kPrefetchBytes + line);
    const int8_t* x = xi + b * kQuantBlock;
    __m256i pair[4];
    for (int p = 0; p < 4; ++p)
      pair[p] = 2 * p < valid ? PairSumsVnni(w + 32 * p, x + 64 * p) : _mm256_setzero_si256();
    const __m256i sums = FoldPairsVnni(pair[0], pair[1], pair[2], pair[3]);
    const __m256 scales = LoadScalesVnni(ws + b, valid);
    const __m256 d = _mm256_mul_ps(scales, _mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << valid) - 1), xs + b));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_permutevar8x32_ps(d, order), acc);
    offset = _mm256_fmadd_ps(scales, _mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << valid) - 1), offsets + b), offset);
  }
  float sum = SumOfLanesVnni(acc) - SumOfLanesVnni(offset);
  if (paired < blocks) {  // an odd block count: the last block on its own
    const int64_t b = paired;
    const int8_t* x = xq + b * kQuantBlock;
    const uint8_t* w = wq + b * kQuantBlock / 2;
    int32_t dot = 0;
    for (int64_t j = 0; j < kQuantBlock / 2; ++j)
      dot += x[j] * ((w[j] & 0xF) - 8) + x[j + kQuantBlock / 2] * ((w[j] >> 4) - 8);
    sum += _mm256_cvtss_f32(LoadScalesVnni(ws + b, 1)) * xs[b] * static_cast<float>(dot);
  }
  return sum;
}
#undef DSV2_Q4_VNNI_ATTR
#endif

template <class S>
HWY_INLINE float DotQ8Q4Portable(const int8_t* xq, const float* xs, const uint8_t* wq, const S* ws, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b)
    sum += ScaleAt(ws, b) * xs[b] * static_cast<float>(BlockDotQ8Q4Portable(xq + b * kQuantBlock, wq + b * kQuantBlock / 2));
  return sum;
}

// y[r] = dot(x, row r) for `rows` consecutive rows of a q8 (q4: `q4` true)
// matrix: one dispatched call per range of rows, so the row kernels inline.
// (Two rows at a time sharing the activation loads ran at half the speed here:
// the interleaved weight and scale streams defeat the prefetchers.)
template <class S>
HWY_INLINE void MatVecQ8With(const int8_t* xq, const float* xs, const std::byte* w, const S* ws, int64_t n, int64_t rows,
                             bool q4, float* y) {
  const int64_t blocks = n / kQuantBlock;
  const int64_t stride = q4 ? n / 2 : n;
  if (q4) {
#if DSV2_Q4_VNNI
    if (cpu_has_avx512_vnni()) {
      thread_local std::vector<float> offsets;  // grow-only; once per activation, not per row
      thread_local std::vector<int8_t> interleaved;
      offsets.resize(static_cast<size_t>(blocks));
      interleaved.resize(static_cast<size_t>(n));
      Q4Offsets(xq, xs, blocks, offsets.data());
      InterleaveQ4Activation(xq, blocks, interleaved.data());
      for (int64_t r = 0; r < rows; ++r)
        y[r] = DotQ8Q4Vnni(xq, interleaved.data(), xs, offsets.data(), reinterpret_cast<const uint8_t*>(w + r * stride),
                           ws + r * blocks, blocks);
      return;
    }
#endif
#if DSV2_AVX2_INTEGER_KERNELS
    thread_local std::vector<float> offsets;  // grow-only; once per activation, not per row
    offsets.resize(static_cast<size_t>(blocks));
    Q4Offsets(xq, xs, blocks, offsets.data());
    for (int64_t r = 0; r < rows; ++r)
      y[r] = DotQ8Q4UnsignedAvx2(xq, xs, offsets.data(), reinterpret_cast<const uint8_t*>(w + r * stride), ws + r * blocks, blocks);
#else
    for (int64_t r = 0; r < rows; ++r)
      y[r] = DotQ8Q4Portable(xq, xs, reinterpret_cast<const uint8_t*>(w + r * stride), ws + r * blocks, blocks);
#endif
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    y[r] = DotQ8Q8With(xq, xs, reinterpret_cast<const int8_t*>(w + r * stride), ws + r * blocks, n);
}

void MatVecQ8(const int8_t* xq, const float* xs, const std::byte* w, BlockScales ws, int64_t n, int64_t rows, bool q4,
              float* y) {
  WithScales(ws, [&](const auto* s) HWY_ATTR { MatVecQ8With(xq, xs, w, s, n, rows, q4, y); });
}

// One q4 row is the matvec of a one-row matrix (the per-activation q4 offsets included).
float DotQ8Q4(const int8_t* xq, const float* xs, const uint8_t* wq, BlockScales ws, int64_t n) {
  float y;
  MatVecQ8(xq, xs, reinterpret_cast<const std::byte*>(wq), ws, n, 1, true, &y);
  return y;
}

// An activation row to q8 blocks: scale = max|x| / 127, q = nearest(x · 127 / max|x|),
// and, where `residual` is not null, what q leaves of each value in steps of
// 1/256 of the scale: residual = nearest((x·127/max|x| - q)·256), within
// [-128, 128] since the first step rounds to nearest, clamped to [-127, 127].
void QuantizeActivation(const float* x, int64_t n, int8_t* q, int8_t* residual, float* scales) {
  const FloatTag df;
  const hn::RebindToSigned<FloatTag> di32;
  const hn::Rebind<int8_t, FloatTag> di8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* block = x + b * kQuantBlock;
    auto amax = hn::Zero(df);
    for (int64_t j = 0; j < kQuantBlock; j += N) amax = hn::Max(amax, hn::Abs(hn::LoadU(df, block + j)));
    const float m = hn::GetLane(hn::MaxOfLanes(df, amax));
    scales[b] = m / 127.0f;
    const auto inverse = hn::Set(df, m > 0.0f ? 127.0f / m : 0.0f);
    for (int64_t j = 0; j < kQuantBlock; j += N) {
      const auto scaled = hn::Mul(hn::LoadU(df, block + j), inverse);
      const auto whole = hn::NearestInt(scaled);
      hn::StoreU(hn::DemoteTo(di8, whole), di8, q + b * kQuantBlock + j);
      if (residual == nullptr) continue;
      const auto left = hn::NearestInt(hn::Mul(hn::Sub(scaled, hn::ConvertTo(df, whole)), hn::Set(df, 256.0f)));
      const auto clamped = hn::Min(hn::Max(left, hn::Set(di32, -127)), hn::Set(di32, 127));
      hn::StoreU(hn::DemoteTo(di8, clamped), di8, residual + b * kQuantBlock + j);
    }
  }
}

void QuantizeActivationQ8(const float* x, int64_t n, int8_t* q, float* scales) {
  QuantizeActivation(x, n, q, nullptr, scales);
}
void QuantizeActivationQ8Residual(const float* x, int64_t n, int8_t* q, int8_t* residual, float* scales) {
  QuantizeActivation(x, n, q, residual, scales);
}

// Row conversions to float32 (prefill converts each weight row once and then
// multiplies it with every token).
void DequantizeBF16(const uint16_t* w, int64_t n, float* out) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadBF16(df, w + i), df, out + i);
  for (; i < n; ++i) out[i] = bf16_to_float(w[i]);
}

template <class S>
HWY_INLINE void DequantizeQ8With(const int8_t* q, const S* scales, int64_t n, float* out) {
  const FloatTag df;
  const hn::RebindToSigned<FloatTag> di32;
  const hn::Rebind<int8_t, FloatTag> di8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const auto scale = hn::Set(df, ScaleAt(scales, b));
    for (int64_t j = b * kQuantBlock; j < (b + 1) * kQuantBlock; j += N)
      hn::StoreU(hn::Mul(scale, hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, q + j)))), df, out + j);
  }
}

void DequantizeQ8(const int8_t* q, BlockScales scales, int64_t n, float* out) {
  WithScales(scales, [&](const auto* s) HWY_ATTR { DequantizeQ8With(q, s, n, out); });
}

template <class S>
HWY_INLINE void DequantizeQ4With(const uint8_t* q, const S* scales, int64_t n, float* out) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int64_t half = kQuantBlock / 2;
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const auto scale = hn::Set(df, ScaleAt(scales, b));
    for (int64_t j = 0; j < half; j += N) {
      hn::Vec<FloatTag> low, high;
      LoadQ4Values(df, q + b * half + j, low, high);
      hn::StoreU(hn::Mul(scale, low), df, out + b * kQuantBlock + j);
      hn::StoreU(hn::Mul(scale, high), df, out + b * kQuantBlock + half + j);
    }
  }
}

void DequantizeQ4(const uint8_t* q, BlockScales scales, int64_t n, float* out) {
  WithScales(scales, [&](const auto* s) HWY_ATTR { DequantizeQ4With(q, s, n, out); });
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace dsv2
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv2 {

HWY_EXPORT(DotF32);
HWY_EXPORT(DotBF16);
HWY_EXPORT(DotQ8);
HWY_EXPORT(DotQ4);
HWY_EXPORT(DotQ8Q8);
HWY_EXPORT(QuantizeActivationQ8);
HWY_EXPORT(QuantizeActivationQ8Residual);
HWY_EXPORT(DotQ8Q4);
HWY_EXPORT(DequantizeBF16);
HWY_EXPORT(DequantizeQ8);
HWY_EXPORT(DequantizeQ4);
HWY_EXPORT(TargetName);
HWY_EXPORT(DotF8);
HWY_EXPORT(MatVecQ8);
HWY_EXPORT(DequantizeF8);

float dot_f32(const float* x, const float* w, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotF32)(x, w, n); }
float dot_bf16(const float* x, const uint16_t* w, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotBF16)(x, w, n); }
float dot_q8(const float* x, const int8_t* q, BlockScales scales, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotQ8)(x, q, scales, n);
}
float dot_q4(const float* x, const uint8_t* q, BlockScales scales, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotQ4)(x, q, scales, n);
}
float dot_q8_q8(const int8_t* xq, const float* xs, const int8_t* wq, BlockScales ws, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotQ8Q8)(xq, xs, wq, ws, n);
}
float dot_q8_q4(const int8_t* xq, const float* xs, const uint8_t* wq, BlockScales ws, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotQ8Q4)(xq, xs, wq, ws, n);
}
void matvec_q8(const int8_t* xq, const float* xs, const std::byte* w, BlockScales ws, int64_t n, int64_t rows, bool q4,
               float* y) {
  HWY_DYNAMIC_DISPATCH(MatVecQ8)(xq, xs, w, ws, n, rows, q4, y);
}
void quantize_activation_q8(const float* x, int64_t n, int8_t* q, float* scales) {
  HWY_DYNAMIC_DISPATCH(QuantizeActivationQ8)(x, n, q, scales);
}
void quantize_activation_q8_residual(const float* x, int64_t n, int8_t* q, int8_t* residual, float* scales) {
  HWY_DYNAMIC_DISPATCH(QuantizeActivationQ8Residual)(x, n, q, residual, scales);
}
void dequantize_row_bf16(const uint16_t* w, int64_t n, float* out) { HWY_DYNAMIC_DISPATCH(DequantizeBF16)(w, n, out); }
void dequantize_row_q8(const int8_t* q, BlockScales scales, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeQ8)(q, scales, n, out);
}
void dequantize_row_q4(const uint8_t* q, BlockScales scales, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeQ4)(q, scales, n, out);
}
std::string simd_target() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}
float dot_fp8(const float* x, const uint8_t* w, const float* scales, int64_t n, int64_t block) {
  return HWY_DYNAMIC_DISPATCH(DotF8)(x, w, scales, n, block);
}
void dequantize_row_fp8(const uint8_t* w, const float* scales, int64_t n, int64_t block, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeF8)(w, scales, n, block, out);
}

void quantize_rows_fp8(const float* w, int64_t rows, int64_t n, int64_t block, uint8_t* q, float* scales) {
  for (int64_t c0 = 0, b = 0; c0 < n; c0 += block, ++b) {
    const int64_t c1 = std::min(n, c0 + block);
    float amax = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[r * n + c]));
    scales[b] = amax / 448.0f;
    const float inverse = amax > 0.0f ? 448.0f / amax : 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) q[r * n + c] = float_to_fp8_e4m3(w[r * n + c] * inverse);
  }
}

namespace {

// max|w| over one block divided by the largest quantized magnitude, stored in
// *out; returns the scale as stored, which q is computed against. 0 for an all-zero block.
float store_block_scale(const float* w, float q_max, float* out) {
  float amax = 0.0f;
  for (int64_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(w[j]));
  return *out = amax / q_max;
}
// float16: rounded to nearest and kept within [kQuantScaleF16Min, kQuantScaleF16Max] (kernels.h says why).
float store_block_scale(const float* w, float q_max, uint16_t* out) {
  float scale;
  store_block_scale(w, q_max, &scale);
  if (scale > 0.0f) scale = std::clamp(f16_to_float(float_to_f16(scale)), kQuantScaleF16Min, kQuantScaleF16Max);
  *out = float_to_f16(scale);
  return scale;
}

int quantize_value(float w, float scale, int lo, int hi) {
  if (scale == 0.0f) return 0;
  return std::clamp(static_cast<int>(std::lround(w / scale)), lo, hi);
}

template <class S>
void quantize_q8(const float* w, int64_t n, int8_t* q, S* scales) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* block = w + b * kQuantBlock;
    const float scale = store_block_scale(block, 127.0f, scales + b);
    for (int64_t j = 0; j < kQuantBlock; ++j)
      q[b * kQuantBlock + j] = static_cast<int8_t>(quantize_value(block[j], scale, -127, 127));
  }
}

template <class S>
void quantize_q4(const float* w, int64_t n, uint8_t* q, S* scales) {
  constexpr int64_t half = kQuantBlock / 2;
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* block = w + b * kQuantBlock;
    const float scale = store_block_scale(block, 7.0f, scales + b);
    for (int64_t j = 0; j < half; ++j) {
      const int low = quantize_value(block[j], scale, -8, 7) + 8;
      const int high = quantize_value(block[j + half], scale, -8, 7) + 8;
      q[b * half + j] = static_cast<uint8_t>(low | (high << 4));
    }
  }
}

}  // namespace

void quantize_row_q8(const float* w, int64_t n, int8_t* q, float* scales) { quantize_q8(w, n, q, scales); }
void quantize_row_q4(const float* w, int64_t n, uint8_t* q, float* scales) { quantize_q4(w, n, q, scales); }
void quantize_row_q8(const float* w, int64_t n, int8_t* q, uint16_t* f16_scales) { quantize_q8(w, n, q, f16_scales); }
void quantize_row_q4(const float* w, int64_t n, uint8_t* q, uint16_t* f16_scales) { quantize_q4(w, n, q, f16_scales); }

namespace reference {

float dot_q8_q8(const int8_t* xq, const float* xs, const int8_t* wq, BlockScales ws, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xs[i / kQuantBlock]) * ws[i / kQuantBlock] * xq[i] * wq[i];
  return static_cast<float>(sum);
}

float dot_q8_q4(const int8_t* xq, const float* xs, const uint8_t* wq, BlockScales ws, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = xs[i / kQuantBlock] * static_cast<float>(xq[i]);
  return reference::dot_q4(x.data(), wq, ws, n);
}

void dequantize_row_q8(const int8_t* q, BlockScales scales, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = scales[i / kQuantBlock] * static_cast<float>(q[i]);
}

void dequantize_row_q4(const uint8_t* q, BlockScales scales, int64_t n, float* out) {
  constexpr int64_t half = kQuantBlock / 2;
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    for (int64_t j = 0; j < half; ++j) {
      const uint8_t byte = q[b * half + j];
      out[b * kQuantBlock + j] = scales[b] * static_cast<float>((byte & 0xF) - 8);
      out[b * kQuantBlock + j + half] = scales[b] * static_cast<float>((byte >> 4) - 8);
    }
}

float dot_f32(const float* x, const float* w, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * w[i];
  return static_cast<float>(sum);
}

float dot_bf16(const float* x, const uint16_t* w, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * bf16_to_float(w[i]);
  return static_cast<float>(sum);
}

float dot_q8(const float* x, const int8_t* q, BlockScales scales, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * scales[i / kQuantBlock] * q[i];
  return static_cast<float>(sum);
}

float dot_q4(const float* x, const uint8_t* q, BlockScales scales, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / kQuantBlock, j = i % kQuantBlock, half = kQuantBlock / 2;
    const uint8_t byte = q[b * half + j % half];
    const int value = (j < half ? (byte & 0xF) : (byte >> 4)) - 8;
    sum += static_cast<double>(x[i]) * scales[b] * value;
  }
  return static_cast<float>(sum);
}

float dot_fp8(const float* x, const uint8_t* w, const float* scales, int64_t n, int64_t block) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * scales[i / block] * fp8_e4m3_to_float(w[i]);
  return static_cast<float>(sum);
}

void dequantize_row_fp8(const uint8_t* w, const float* scales, int64_t n, int64_t block, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = scales[i / block] * fp8_e4m3_to_float(w[i]);
}

}  // namespace reference
}  // namespace dsv2
#endif  // HWY_ONCE
