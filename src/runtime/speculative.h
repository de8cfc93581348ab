// Speculative decoding with the MTP module as the drafter (DeepSeek-V3 §5.4.3;
// Leviathan et al. 2023, Chen et al. 2023). Each step:
//   1. the MTP module drafts `draft` tokens (the first from the main model's
//      hidden state and the pending token, the next ones by feeding the
//      module its own output: depth-1 MTP applied again, as vLLM does);
//   2. the main model runs the pending token and the drafts in ONE forward
//      through the latent cache;
//   3. drafts are accepted from the left — greedy: while they equal the main
//      model's choice; sampling: each with probability min(1, p/q), a rejected
//      one replaced by a draw from normalise((p − q)+) — and one more token
//      comes from the main model (the correction, or a bonus when all passed);
//   4. the rows of rejected drafts are rolled back: both caches' lengths are
//      set back (their rows are overwritten later), the MTP module re-reads
//      the accepted positions with the main model's hidden states.
// Greedy output equals plain greedy decoding up to float rounding (the
// verification batches rows, runtime/generator.h does one at a time); with
// sampling the output distribution is the main model's.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/mtp.h"
#include "runtime/generator.h"

namespace dsv2 {

struct SpeculativeStats {
  int64_t drafted = 0, accepted = 0, steps = 0;  // steps: main-model forward calls after the prefill
};

struct SpeculativeOptions {
  int64_t draft = 1;  // tokens drafted per step (>= 1)
  // For tests: may overwrite the drafted tokens before verification (greedy
  // only: with sampling the drafts must come from the q the rule divides by).
  // `position` is the position of drafts[0] in the sequence.
  std::function<void(int64_t position, std::vector<int32_t>& drafts)> edit_drafts;
};

// The sampling options speculative decoding cannot keep exact: the penalties
// depend on the tokens accepted within a step. Empty when all is well, else the
// option's name. (Greedy supports everything: it calls the Sampler in order.)
std::string speculative_sampling_problem(const SamplingOptions& sampling);

// As generate() (runtime/generator.h) from an empty cache; `cache` and
// `mtp_cache` (MtpModule::make_cache) need room for the prompt, max_tokens and
// `draft` more rows. Throws Error on options it cannot honour.
std::vector<int32_t> generate_speculative(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const SpeculativeOptions& speculative,
                                          const std::function<bool(int32_t)>& on_token,
                                          SpeculativeStats* stats = nullptr);

}  // namespace dsv2
