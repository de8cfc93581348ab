#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "dist/communicator.h"
#include "ops/elementwise.h"

namespace dsv2 {

namespace {

std::vector<ParameterRange> all_or(const TrainWeights& weights, std::vector<ParameterRange> owned) {
  if (owned.empty()) owned.push_back({0, static_cast<int64_t>(weights.values.size())});
  return owned;
}

// Calls piece(info, begin, end, at) for each part [begin, end) of a trained
// tensor inside an owned range, tensors in for_each_trained_tensor order; `at` is the
// part's position in the owned ranges laid end to end (the moments' index).
template <class Piece>
void for_each_owned_piece(const TrainWeights& weights, const std::vector<ParameterRange>& owned, Piece&& piece) {
  for (const auto& info : weights.infos()) {
    if (!info.trained || info.frozen) continue;
    int64_t at = 0;
    for (const ParameterRange& r : owned) {
      const int64_t begin = std::max(r.begin, info.offset), end = std::min(r.end, info.offset + info.size);
      if (begin < end) piece(info, begin, end, at + (begin - r.begin));
      at += r.end - r.begin;
    }
  }
}

int64_t total_size(const std::vector<ParameterRange>& ranges) {
  int64_t n = 0;
  for (const ParameterRange& r : ranges) n += r.end - r.begin;
  return n;
}

}  // namespace

AdamW::AdamW(const TrainWeights& weights, const AdamWOptions& options, std::vector<ParameterRange> owned)
    : options_(options),
      owned_(all_or(weights, std::move(owned))),
      m_(static_cast<size_t>(total_size(owned_)), 0.0f),
      v_(static_cast<size_t>(total_size(owned_)), 0.0f) {}

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
  for_each_owned_piece(weights, owned_, [&](const ParameterInfo& info, int64_t begin, int64_t end, int64_t at) {
    s.decay = info.decay ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
    float* p = weights.values.data() + begin;
    const float* g = weights.grads.data() + begin;
    float* m = m_.data() + at;
    float* v = v_.data() + at;
    parallel_for(end - begin, kElementwiseGrain,
                 [&](int64_t b, int64_t e) { adamw_update(p + b, g + b, m + b, v + b, e - b, s); });
  });
}

double clip_grad_norm(TrainWeights& weights, double max_norm, const std::vector<ParameterRange>& owned_ranges,
                      const dist::Communicator* group) {
  const std::vector<ParameterRange> owned = all_or(weights, owned_ranges);
  // Σ g² in fixed blocks of kElementwiseGrain elements (float32 within a block,
  // like torch's per-tensor norms), the block sums added in order in double:
  // the same norm whatever the thread count.
  double sum = 0.0;
  std::vector<double> block_sums;
  for_each_owned_piece(weights, owned, [&](const ParameterInfo&, int64_t first, int64_t last, int64_t) {
    const float* g = weights.grads.data() + first;
    const int64_t size = last - first, blocks = (size + kElementwiseGrain - 1) / kElementwiseGrain;
    block_sums.assign(blocks, 0.0);
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t begin = b * kElementwiseGrain, end = std::min(size, begin + kElementwiseGrain);
        block_sums[b] = sum_of_squares(g + begin, end - begin);
      }
    });
    for (double s : block_sums) sum += s;
  });
  if (group) sum = group->sum(sum);
  const double norm = std::sqrt(sum);
  const double coeff = std::min(1.0, max_norm / (norm + 1e-6));
  if (coeff < 1.0) {
    float* g = weights.grads.data();
    for (const ParameterRange& r : owned)
      parallel_for(r.end - r.begin, kElementwiseGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = r.begin + begin; i < r.begin + end; ++i) g[i] = static_cast<float>(g[i] * coeff);
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
