// Decoupled rotary position embedding for q_R and k_R (DeepSeek-V2 §2.1.3),
// with YaRN context extension. Semantics follow Hugging Face / DeepSeek:
//   inv_freq_i  = blend of θ^(-2i/d) (extrapolation) and θ^(-2i/d)/factor
//                 (interpolation) by a linear ramp between the correction dims
//                 of beta_fast and beta_slow;
//   cos/sin     × attention_factor = mscale(factor, mscale) / mscale(factor, mscale_all_dim);
//   softmax scale = (d_n + d_R)^-0.5 · mscale(factor, mscale_all_dim)²;
// applied at every position once configured (not only past the original length).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv2 {

class Rope {
 public:
  explicit Rope(const Config& config);

  // Rotates `count` vectors of qk_rope_head_dim values, `stride` apart, all at `position`.
  void apply(float* x, int64_t count, int64_t stride, int64_t position) const;
  // Gradient of apply: rotates gradients back (training).
  void apply_backward(float* dx, int64_t count, int64_t stride, int64_t position) const;
  float softmax_scale() const { return softmax_scale_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  float attention_factor() const { return attention_factor_; }

 private:
  int64_t dim_;
  bool interleave_;
  std::vector<float> inv_freq_;
  float attention_factor_ = 1.0f;
  float softmax_scale_ = 1.0f;

  void angles(int64_t position, float* cos, float* sin) const;
};

// YaRN's magnitude correction: 0.1·mscale·ln(scale) + 1 (1 when scale ≤ 1).
double yarn_mscale(double scale, double mscale);

}  // namespace dsv2
