// Sampling many completions at once for RL (GRPO, train/grpo.h): for each
// prompt, `group` completions decoded together with the inference engine's
// batched forward (Model::forward_batch) over latent caches. A prompt is
// prefilled once and its cache copied to the other completions of its group;
// then every unfinished sequence of every prompt decodes one token per step,
// so the weights are read once per step for all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv2 {

struct RolloutOptions {
  int64_t group = 8;            // completions per prompt
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;     // completion i of the call draws with seed sampling.seed + i
  std::vector<int64_t> stop_ids;  // a completion ends after one of these (it is kept)
};

struct Completion {
  std::vector<int32_t> tokens;
  bool stopped = false;  // ended with a stop id (else it reached max_new_tokens)
};

struct RolloutStats {
  int64_t prompt_tokens = 0, sampled_tokens = 0;
  double prefill_seconds = 0.0, decode_seconds = 0.0;
};

// completions[p][i]: the i-th completion of prompt p. Throws Error when a
// prompt plus max_new_tokens exceeds the model's context.
std::vector<std::vector<Completion>> sample_completions(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                        const RolloutOptions& options, RolloutStats* stats = nullptr);

// Copies positions [0, from.length()) of every layer into `to` (float32
// rows; `to` must have the room), which then has that length.
void copy_cache(const Config& config, const LatentCache& from, LatentCache& to);

}  // namespace dsv2
