#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "ops/elementwise.h"

namespace dsv2 {

AdamW::AdamW(const TrainWeights& weights, const AdamWOptions& options)
    : options_(options), m_(weights.values.size(), 0.0f), v_(weights.values.size(), 0.0f) {}

void AdamW::step(TrainWeights& weights, double lr) {
  ++steps_;
  // Constants in double, the update in float32, as torch.optim.AdamW does it.
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double correction1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double correction2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  AdamWStep s{};
  s.beta1 = static_cast<float>(b1), s.beta2 = static_cast<float>(b2);
  s.step_size = static_cast<float>(lr / correction1);
  s.sqrt_correction2 = static_cast<float>(std::sqrt(correction2));
  s.eps = static_cast<float>(options_.eps);
  for (const auto& info : weights.infos()) {
    if (!info.trained) continue;
    s.decay = info.decay ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
    float* p = weights.values.data() + info.offset;
    const float* g = weights.grads.data() + info.offset;
    float* m = m_.data() + info.offset;
    float* v = v_.data() + info.offset;
    parallel_for(info.size, kElementwiseGrain,
                 [&](int64_t begin, int64_t end) { adamw_update(p + begin, g + begin, m + begin, v + begin, end - begin, s); });
  }
}

double clip_grad_norm(TrainWeights& weights, double max_norm) {
  // Σ g² in fixed blocks of kElementwiseGrain elements (float32 within a block,
  // like torch's per-tensor norms), the block sums added in order in double:
  // the same norm whatever the thread count.
  double sum = 0.0;
  std::vector<double> block_sums;
  for (const auto& info : weights.infos()) {
    if (!info.trained) continue;
    const float* g = weights.grads.data() + info.offset;
    const int64_t blocks = (info.size + kElementwiseGrain - 1) / kElementwiseGrain;
    block_sums.assign(blocks, 0.0);
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t begin = b * kElementwiseGrain, end = std::min(info.size, begin + kElementwiseGrain);
        block_sums[b] = sum_of_squares(g + begin, end - begin);
      }
    });
    for (double s : block_sums) sum += s;
  }
  const double norm = std::sqrt(sum);
  const double coeff = std::min(1.0, max_norm / (norm + 1e-6));
  if (coeff < 1.0) {
    float* g = weights.grads.data();
    parallel_for(static_cast<int64_t>(weights.grads.size()), kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) g[i] = static_cast<float>(g[i] * coeff);
    });
  }
  return norm;
}

double LrSchedule::at(int64_t step, int64_t total, double token_progress) const {
  if (warmup_steps > 0 && step < warmup_steps) return peak * static_cast<double>(step + 1) / warmup_steps;
  if (kind == "constant") return peak;
  if (kind == "cosine") {
    const double span = std::max<int64_t>(1, total - warmup_steps);
    const double t = std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(M_PI * t)));
  }
  double lr = peak;
  if (token_progress >= 0.6) lr *= decay;
  if (token_progress >= 0.9) lr *= decay;
  return lr;
}

double BatchRamp::share(int64_t step) const {
  if (steps <= 0 || step >= steps) return 1.0;
  return start + (1.0 - start) * static_cast<double>(step) / steps;
}

}  // namespace dsv2
