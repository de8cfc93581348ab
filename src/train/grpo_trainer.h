// dsv2 grpo's loop (train/grpo.h for the objective): each step samples G
// completions for each of its prompts from the current policy, scores them,
// takes the reference model's log-probabilities, and runs `iterations`
// (μ) updates of the clipped-ratio objective with the KL penalty, AdamW after
// each. docs/ALIGNMENT.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/grpo.h"
#include "train/rewards.h"
#include "train/rl_prompts.h"

namespace dsv2 {

class Tokenizer;

struct GrpoOptions {
  std::string model_dir;  // the SFT model: the policy's start and the frozen reference
  std::string out_dir;
  int64_t group = 8;             // G
  int64_t steps = 100;
  int64_t prompts_per_step = 1;
  int64_t iterations = 1;        // μ: updates per batch of samples (1: π_old = π, ratio 1)
  int64_t max_new_tokens = 256;
  float temperature = 1.0f;
  double lr = 1e-6;              // DeepSeekMath's
  double clip_grad = 1.0;
  GrpoObjectiveOptions objective;
  uint64_t seed = 1;
  int64_t save_every = 0;        // write the model into out_dir every N steps (0: only at the end)
  bool save_bf16 = false;
};

// Trains from the model in options.model_dir on `prompts` with `reward`;
// writes out_dir/metrics.jsonl (one line per step) and the trained model with
// the base model's tokenizer files. out_dir is created only once the first
// step has sampled and scored (a reward that fails at once leaves nothing).
void run_grpo(const GrpoOptions& options, const std::vector<RlPrompt>& prompts, const Tokenizer& tokenizer, Reward& reward);

}  // namespace dsv2
