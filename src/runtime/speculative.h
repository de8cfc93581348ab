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
#include <random>
#include <string>
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

// One sequence's speculative decoding, step by step: generate_speculative's
// loop, and the server's engine (server/engine.cpp), which alternates it with
// plain batched steps. State between steps: the main cache holds positions
// [0, L), the pending token (sampled, not yet fed) sits at L, and the MTP cache
// holds [0, M) with M <= L; catch_up() brings M to L before a step.
class SpeculativeDecoder {
 public:
  // Everything passed must outlive the decoder; `sampler` is the sequence's
  // (greedy steps record their tokens in it, as plain decoding does).
  SpeculativeDecoder(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache, Sampler& sampler,
                     const SamplingOptions& sampling, AttentionPath path, SpeculativeOptions options);

  // The MTP module reads positions M .. M+rows-1: `hidden` [rows, d] are the
  // main model's normed hidden states there (Model::forward's `hidden`) and
  // next_ids[i] the token at position M+i+1. When the last row reaches L, its
  // next id is the pending token and step() may run.
  void catch_up(const float* hidden, const int32_t* next_ids, int64_t rows);

  // One step (requires M == L): drafts up to min(draft, max_new - 1) tokens
  // (fewer where the caches end), verifies them with the pending token in one
  // forward, and hands the resulting tokens in order to on_token(id, the
  // logits row it was chosen from). Returns false when on_token returned false
  // (generation ends with that token: the caches then hold the positions before
  // it, the MTP cache [0, L)); true after a full step, with the state above.
  bool step(int64_t max_new, const std::function<bool(int32_t, const float*)>& on_token, SpeculativeStats& stats);

  int32_t pending() const { return pending_; }

 private:
  Model& model_;
  MtpModule& mtp_;
  LatentCache& cache_;
  LatentCache& mtp_cache_;
  Sampler& sampler_;
  AttentionPath path_;
  SpeculativeOptions options_;
  bool greedy_;
  int32_t pending_ = -1;
  std::mt19937_64 rng_;  // acceptance draws, apart from the sampler's
  std::vector<float> logits_, hidden_;
  std::vector<float> q_logits_, g_;  // the MTP's logits and output state for the next draft
  std::vector<std::vector<float>> q_;  // the draft distributions (sampling)
  std::vector<int32_t> drafts_, tokens_, next_;
};

// As generate() (runtime/generator.h) from an empty cache; `cache` and
// `mtp_cache` (MtpModule::make_cache) need room for the prompt, max_tokens and
// `draft` more rows. Throws Error on options it cannot honour.
std::vector<int32_t> generate_speculative(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const SpeculativeOptions& speculative,
                                          const std::function<bool(int32_t)>& on_token,
                                          SpeculativeStats* stats = nullptr);

}  // namespace dsv2
