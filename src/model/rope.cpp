#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "ops/backward.h"
#include "ops/elementwise.h"

namespace dsv2 {

double yarn_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

namespace {
// The dimension whose wavelength completes `rotations` turns over `max_positions`.
double correction_dim(double rotations, int64_t dim, double base, double max_positions) {
  return dim * std::log(max_positions / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}
}  // namespace

Rope::Rope(const Config& c) : dim_(c.qk_rope_head_dim), interleave_(c.rope_interleave) {
  const int64_t half = dim_ / 2;
  inv_freq_.resize(half);
  // float32 arithmetic as in the reference, so angles agree to the last bit or two.
  std::vector<float> extrapolation(half), interpolation(half);
  const RopeScaling& y = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    const float pos_freq = static_cast<float>(std::pow(c.rope_theta, static_cast<double>(static_cast<float>(2 * i) / dim_)));
    extrapolation[i] = 1.0f / pos_freq;
    interpolation[i] = 1.0f / (static_cast<float>(y.factor) * pos_freq);
  }
  const double base_scale = std::pow(static_cast<double>(c.qk_head_dim()), -0.5);
  if (y.type != "yarn") {
    inv_freq_ = extrapolation;
    softmax_scale_ = static_cast<float>(base_scale);
    return;
  }
  const double original = static_cast<double>(y.original_max_position_embeddings);
  double low = std::floor(correction_dim(y.beta_fast, dim_, c.rope_theta, original));
  double high = std::ceil(correction_dim(y.beta_slow, dim_, c.rope_theta, original));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim_ - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp(static_cast<float>((static_cast<float>(i) - low) / (high - low)), 0.0f, 1.0f);
    const float extrapolation_weight = 1.0f - ramp;
    inv_freq_[i] = interpolation[i] * (1.0f - extrapolation_weight) + extrapolation[i] * extrapolation_weight;
  }
  attention_factor_ = static_cast<float>(yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim));
  double scale = base_scale;
  if (y.mscale_all_dim != 0.0) {
    const double m = yarn_mscale(y.factor, y.mscale_all_dim);
    scale *= m * m;
  }
  softmax_scale_ = static_cast<float>(scale);
}

void Rope::angles(int64_t position, float* cos, float* sin) const {
  for (int64_t i = 0; i < dim_ / 2; ++i) {
    const float angle = static_cast<float>(position) * inv_freq_[i];
    cos[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor_;
    sin[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor_;
  }
}

void Rope::apply_backward(float* dx, int64_t count, int64_t stride, int64_t position) const {
  float cos[256], sin[256];
  angles(position, cos, sin);
  for (int64_t v = 0; v < count; ++v) {
    if (interleave_)
      rope_rotate_backward(dx + v * stride, cos, sin, dim_);
    else
      rope_rotate_half_split_backward(dx + v * stride, cos, sin, dim_);
  }
}

void Rope::apply(float* x, int64_t count, int64_t stride, int64_t position) const {
  float cos[256], sin[256];  // qk_rope_head_dim ≤ 512 is checked at load
  angles(position, cos, sin);
  for (int64_t v = 0; v < count; ++v) {
    if (interleave_)
      rope_rotate(x + v * stride, cos, sin, dim_);
    else
      rope_rotate_half_split(x + v * stride, cos, sin, dim_);
  }
}

}  // namespace dsv2
