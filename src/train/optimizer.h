// AdamW as torch.optim.AdamW computes it (decoupled weight decay applied first,
// bias-corrected moments), global gradient-norm clipping, and DeepSeek-V2's
// learning-rate schedule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/train_weights.h"

namespace dsv2 {

namespace dist {
class Communicator;
}

// A slice [begin, end) of TrainWeights' flat buffers.
struct ParameterRange {
  int64_t begin = 0, end = 0;
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// AdamW over the `owned` ranges of the parameters (ZeRO-1: this rank's
// partition; empty: all of them). The moments exist for those ranges only,
// concatenated in order.
class AdamW {
 public:
  AdamW(const TrainWeights& weights, const AdamWOptions& options, std::vector<ParameterRange> owned = {});
  void step(TrainWeights& weights, double lr);
  int64_t steps() const { return steps_; }
  const std::vector<ParameterRange>& owned() const { return owned_; }
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  AdamWOptions options_;
  std::vector<ParameterRange> owned_;
  std::vector<float> m_, v_;
  int64_t steps_ = 0;
};

// Scales the gradients so that their L2 norm over the whole model is at most
// max_norm (torch's clip_grad_norm_); returns the norm before clipping. Each
// rank passes the ranges it owns (empty: all) and the group whose owned
// ranges together cover the model (null: this process alone).
double clip_grad_norm(TrainWeights& weights, double max_norm, const std::vector<ParameterRange>& owned = {},
                      const dist::Communicator* group = nullptr);

struct LrSchedule {
  std::string kind = "step";  // "step" (DeepSeek-V2) | "cosine" | "constant"
  double peak = 4.2e-4;
  int64_t warmup_steps = 2000;
  double min_ratio = 0.1;     // cosine floor as a share of the peak
  // step: × decay after 60% and again after 90% of the training tokens.
  double decay = 0.316;
  // `token_progress`: the share of the run's tokens consumed before this step
  // (differs from step / total_steps while a batch ramp is on).
  double at(int64_t step, int64_t total_steps, double token_progress) const;
};

// Batch-size ramp: the share of the full batch used at a step (DeepSeek-V2
// grows the batch early in training). Linear from `start` to 1 over `steps`.
struct BatchRamp {
  double start = 1.0;
  int64_t steps = 0;
  double share(int64_t step) const;
};

}  // namespace dsv2
