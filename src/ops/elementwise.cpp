// The kernels of elementwise.h, compiled once per SIMD target by Highway's
// foreach_target (this file includes itself once per target). exp comes from
// Highway's contrib/math (1 ulp); sums keep independent accumulators, so they
// differ from the scalar references by rounding only.
#include "ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/elementwise.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv2 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::ScalableTag<float>;

float SumOfSquares(const float* x, int64_t n) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto s0 = hn::Zero(df), s1 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const auto a = hn::LoadU(df, x + i), b = hn::LoadU(df, x + i + N);
    s0 = hn::MulAdd(a, a, s0);
    s1 = hn::MulAdd(b, b, s1);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

void RmsNormRow(const float* x, const float* weight, float eps, int64_t n, float* out) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const float inv = 1.0f / std::sqrt(SumOfSquares(x, n) / static_cast<float>(n) + eps);
  const auto vinv = hn::Set(df, inv);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::Mul(hn::LoadU(df, weight + i), hn::Mul(hn::LoadU(df, x + i), vinv)), df, out + i);
  for (; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

float MaxValue(const float* x, int64_t n) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto m = hn::Set(df, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(df, x + i));
  float result = hn::GetLane(hn::MaxOfLanes(df, m));
  for (; i < n; ++i) result = std::max(result, x[i]);
  return result;
}

float ExpShiftedSum(float* x, int64_t n, float shift) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vshift = hn::Set(df, shift);
  auto sum = hn::Zero(df);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), vshift));
    hn::StoreU(e, df, x + i);
    sum = hn::Add(sum, e);
  }
  float total = hn::GetLane(hn::SumOfLanes(df, sum));
  for (; i < n; ++i) total += (x[i] = std::exp(x[i] - shift));
  return total;
}

void Scale(float* x, int64_t n, float factor) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto f = hn::Set(df, factor);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), f), df, x + i);
  for (; i < n; ++i) x[i] *= factor;
}

// silu(g)·u = g·u / (1 + exp(-g)); -g is clamped below exp's overflow, where
// the quotient is already 0 to float precision. out may be gate.
void SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto one = hn::Set(df, 1.0f), limit = hn::Set(df, 88.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(df, gate + i);
    const auto e = hn::Exp(df, hn::Min(hn::Neg(g), limit));
    hn::StoreU(hn::Div(hn::Mul(g, hn::LoadU(df, up + i)), hn::Add(one, e)), df, out + i);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// h = silu(g)·u with s = σ(g): du = dh·g·s, dg = dh·u·s·(1 + g·(1 − s)).
void SiluMulBackward(const float* gate, const float* up, const float* dh, int64_t n, float* dgate, float* dup) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto one = hn::Set(df, 1.0f), limit = hn::Set(df, 88.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(df, gate + i), d = hn::LoadU(df, dh + i);
    const auto s = hn::Div(one, hn::Add(one, hn::Exp(df, hn::Min(hn::Neg(g), limit))));
    hn::StoreU(hn::Mul(d, hn::Mul(g, s)), df, dup + i);
    const auto slope = hn::MulAdd(g, hn::Sub(one, s), one);
    hn::StoreU(hn::Mul(hn::Mul(d, hn::LoadU(df, up + i)), hn::Mul(s, slope)), df, dgate + i);
  }
  for (; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-gate[i]));
    dup[i] = dh[i] * gate[i] * s;
    dgate[i] = dh[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
  }
}

// (a, b) rotated by the angle whose cosine and sine are c and s.
HWY_INLINE void RotatePair(float& a, float& b, float c, float s) {
  const float a0 = a;
  a = a0 * c - b * s;
  b = a0 * s + b * c;
}

// Rotates the n/2 pairs of x: (x[2i], x[2i+1]) when interleaved, else (x[i], x[i + n/2]).
template <bool kInterleaved>
void RotatePairs(float* x, const float* cos, const float* sin, int64_t n) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t half = n / 2;
  int64_t i = 0;
  for (; i + N <= half; i += N) {
    hn::Vec<FloatTag> a, b;
    if constexpr (kInterleaved) {
      hn::LoadInterleaved2(df, x + 2 * i, a, b);
    } else {
      a = hn::LoadU(df, x + i);
      b = hn::LoadU(df, x + i + half);
    }
    const auto c = hn::LoadU(df, cos + i), s = hn::LoadU(df, sin + i);
    const auto ra = hn::NegMulAdd(b, s, hn::Mul(a, c)), rb = hn::MulAdd(a, s, hn::Mul(b, c));
    if constexpr (kInterleaved) {
      hn::StoreInterleaved2(ra, rb, df, x + 2 * i);
    } else {
      hn::StoreU(ra, df, x + i);
      hn::StoreU(rb, df, x + i + half);
    }
  }
  for (; i < half; ++i) {
    if constexpr (kInterleaved)
      RotatePair(x[2 * i], x[2 * i + 1], cos[i], sin[i]);
    else
      RotatePair(x[i], x[i + half], cos[i], sin[i]);
  }
}

void RopeInterleaved(float* x, const float* cos, const float* sin, int64_t n) { RotatePairs<true>(x, cos, sin, n); }
void RopeHalfSplit(float* x, const float* cos, const float* sin, int64_t n) { RotatePairs<false>(x, cos, sin, n); }

// The AdamW update in torch's order of operations (lerp for m, addcmul for v,
// addcdiv for p), so the float32 roundings match up to FMA contraction.
void AdamWUpdate(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  const FloatTag df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto decay = hn::Set(df, s.decay), b2 = hn::Set(df, s.beta2);
  const auto one_minus_b1 = hn::Set(df, 1.0f - s.beta1), one_minus_b2 = hn::Set(df, 1.0f - s.beta2);
  const auto step_size = hn::Set(df, s.step_size), sqrt_c2 = hn::Set(df, s.sqrt_correction2), eps = hn::Set(df, s.eps);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto gi = hn::LoadU(df, g + i);
    const auto mi = hn::LoadU(df, m + i);
    const auto m_new = hn::MulAdd(one_minus_b1, hn::Sub(gi, mi), mi);
    const auto v_new = hn::MulAdd(hn::Mul(gi, gi), one_minus_b2, hn::Mul(hn::LoadU(df, v + i), b2));
    const auto denom = hn::Add(hn::Div(hn::Sqrt(v_new), sqrt_c2), eps);
    const auto p_new = hn::NegMulAdd(step_size, hn::Div(m_new, denom), hn::Mul(hn::LoadU(df, p + i), decay));
    hn::StoreU(m_new, df, m + i);
    hn::StoreU(v_new, df, v + i);
    hn::StoreU(p_new, df, p + i);
  }
  reference::adamw_update(p + i, g + i, m + i, v + i, n - i, s);
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv2
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv2 {

HWY_EXPORT(SumOfSquares);
HWY_EXPORT(RmsNormRow);
HWY_EXPORT(MaxValue);
HWY_EXPORT(ExpShiftedSum);
HWY_EXPORT(Scale);
HWY_EXPORT(SiluMul);
HWY_EXPORT(SiluMulBackward);
HWY_EXPORT(RopeInterleaved);
HWY_EXPORT(RopeHalfSplit);
HWY_EXPORT(AdamWUpdate);

void rmsnorm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, float* out) {
  const auto norm_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) HWY_DYNAMIC_DISPATCH(RmsNormRow)(x + r * n, weight, eps, n, out + r * n);
  };
  // A row is a few microseconds of work: only prefill-sized batches are worth the threads.
  if (rows * n >= (1 << 16))
    parallel_for(rows, 1, norm_rows);
  else
    norm_rows(0, rows);
}

float sum_of_squares(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(SumOfSquares)(x, n); }

float max_value(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(MaxValue)(x, n); }

float exp_shifted_sum(float* x, int64_t n, float shift) { return HWY_DYNAMIC_DISPATCH(ExpShiftedSum)(x, n, shift); }

void softmax(float* x, int64_t n) {
  const float sum = exp_shifted_sum(x, n, max_value(x, n));
  HWY_DYNAMIC_DISPATCH(Scale)(x, n, 1.0f / sum);
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float silu(float x) { return x * sigmoid(x); }

void silu_mul(float* gate, const float* up, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluMul)(gate, up, gate, n); }

void silu_mul_to(const float* gate, const float* up, float* out, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    HWY_DYNAMIC_DISPATCH(SiluMul)(gate + begin, up + begin, out + begin, end - begin);
  });
}

void silu_mul_backward(const float* gate, const float* up, const float* dh, int64_t n, float* dgate, float* dup) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    HWY_DYNAMIC_DISPATCH(SiluMulBackward)(gate + begin, up + begin, dh + begin, end - begin, dgate + begin, dup + begin);
  });
}

void rope_rotate(float* x, const float* cos, const float* sin, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RopeInterleaved)(x, cos, sin, n);
}

void rope_rotate_half_split(float* x, const float* cos, const float* sin, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RopeHalfSplit)(x, cos, sin, n);
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  HWY_DYNAMIC_DISPATCH(AdamWUpdate)(p, g, m, v, n, s);
}

namespace reference {

void rmsnorm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i) out[r * n + i] = static_cast<float>(weight[i] * (xr[i] * inv));
  }
}

float exp_shifted_sum(float* x, int64_t n, float shift) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - shift)));
  return static_cast<float>(sum);
}

void softmax(float* x, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  const double sum = exp_shifted_sum(x, n, max);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] / sum);
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    gate[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void silu_mul_backward(const float* gate, const float* up, const float* dh, int64_t n, float* dgate, float* dup) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], s = 1.0 / (1.0 + std::exp(-g));
    dup[i] = static_cast<float>(dh[i] * g * s);
    dgate[i] = static_cast<float>(dh[i] * up[i] * s * (1.0 + g * (1.0 - s)));
  }
}

void rope_rotate(float* x, const float* cos, const float* sin, int64_t n) {
  for (int64_t i = 0; i < n / 2; ++i) {
    const double a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = static_cast<float>(a * cos[i] - b * sin[i]);
    x[2 * i + 1] = static_cast<float>(a * sin[i] + b * cos[i]);
  }
}

void rope_rotate_half_split(float* x, const float* cos, const float* sin, int64_t n) {
  const int64_t half = n / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double a = x[i], b = x[i + half];
    x[i] = static_cast<float>(a * cos[i] - b * sin[i]);
    x[i + half] = static_cast<float>(a * sin[i] + b * cos[i]);
  }
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  for (int64_t i = 0; i < n; ++i) {
    m[i] = m[i] + (1.0f - s.beta1) * (g[i] - m[i]);
    v[i] = v[i] * s.beta2 + (1.0f - s.beta2) * g[i] * g[i];
    const float denom = std::sqrt(v[i]) / s.sqrt_correction2 + s.eps;
    p[i] = p[i] * s.decay - s.step_size * (m[i] / denom);
  }
}

}  // namespace reference
}  // namespace dsv2
#endif  // HWY_ONCE
