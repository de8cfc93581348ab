#include "train/grpo.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv2 {

double grpo_kl(float ref_logp, float logp) {
  const double x = static_cast<double>(ref_logp) - logp;  // log(π_ref/π)
  return std::exp(x) - x - 1.0;
}

bool grpo_clipped(const GrpoToken& t, float logp, const GrpoObjectiveOptions& o) {
  const double ratio = std::exp(static_cast<double>(logp) - t.old_logp);
  return (t.advantage > 0 && ratio > 1.0 + o.clip_eps) || (t.advantage < 0 && ratio < 1.0 - o.clip_eps);
}

double grpo_token_value(const GrpoToken& t, float logp, const GrpoObjectiveOptions& o) {
  const double ratio = std::exp(static_cast<double>(logp) - t.old_logp);
  const double clipped = std::clamp(ratio, 1.0 - o.clip_eps, 1.0 + o.clip_eps);
  return t.weight * (std::min(ratio * t.advantage, clipped * t.advantage) - o.beta * grpo_kl(t.ref_logp, logp));
}

float grpo_coefficient(const GrpoToken& t, float logp, const GrpoObjectiveOptions& o) {
  const double ratio = std::exp(static_cast<double>(logp) - t.old_logp);
  const double surrogate = grpo_clipped(t, logp, o) ? 0.0 : t.advantage * ratio;
  // d/dlogπ of −β(π_ref/π − log(π_ref/π) − 1) = β(π_ref/π − 1).
  const double kl = o.beta * (std::exp(static_cast<double>(t.ref_logp) - logp) - 1.0);
  return static_cast<float>(t.weight * (surrogate + kl));
}

std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t group) {
  require(group >= 2 && rewards.size() % group == 0, "GRPO: advantages need groups of at least 2 completions");
  std::vector<double> a(rewards.size());
  for (size_t first = 0; first < rewards.size(); first += group) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < group; ++i) mean += rewards[first + i] / group;
    for (int64_t i = 0; i < group; ++i) var += (rewards[first + i] - mean) * (rewards[first + i] - mean) / (group - 1);
    const double std = std::sqrt(var);
    for (int64_t i = 0; i < group; ++i) a[first + i] = (rewards[first + i] - mean) / (std + 1e-4);
  }
  return a;
}

Batch completion_batch(const std::vector<int32_t>& prompt, const std::vector<std::vector<int32_t>>& completions, int32_t pad) {
  require(!prompt.empty(), "GRPO: an empty prompt");
  int64_t T = 0;
  for (const auto& c : completions) {
    require(!c.empty(), "GRPO: an empty completion");
    T = std::max<int64_t>(T, static_cast<int64_t>(prompt.size() + c.size()) - 1);
  }
  Batch b;
  b.batch = static_cast<int64_t>(completions.size());
  b.seq_len = T;
  b.inputs.assign(b.batch * T, pad);
  b.targets.assign(b.batch * T, -1);
  b.droppable.assign(b.batch, 0);
  const int64_t P = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < b.batch; ++i) {
    const auto& c = completions[i];
    const int64_t L = P + static_cast<int64_t>(c.size());
    for (int64_t t = 0; t + 1 < L; ++t) {
      b.inputs[i * T + t] = t < P ? prompt[t] : c[t - P];
      if (t + 1 >= P) b.targets[i * T + t] = c[t + 1 - P];
    }
  }
  return b;
}

}  // namespace dsv2
