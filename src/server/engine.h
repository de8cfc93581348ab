// Continuous batching. One engine thread owns the model; requests queue up and
// join the running batch between steps. Every step runs all active sequences
// through ONE Model::forward_batch call (each with its own paged latent cache):
// prompts are prefilled in chunks while the others decode a token each, so the
// routed experts' weights are read once for everyone. A finished sequence's
// cache is kept in a small pool; a new prompt that starts with the same tokens
// (a chat's earlier turns, a shared system prompt) reuses it.
//
// With a drafter (dsv2 serve --speculative mtp), a sequence that runs alone
// takes speculative steps (runtime/speculative.h): MTP drafts verified in one
// forward. While others run, everyone shares the batched step as above, and
// the MTP module reads the hidden states those steps leave behind, so that the
// sequence can draft again as soon as it is alone (docs/SERVER.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/latent_cache.h"
#include "model/model.h"
#include "model/mtp.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"

namespace dsv2 {

struct GenerationJob;

struct EngineOptions {
  int64_t parallel = 4;         // sequences decoded together
  int64_t context = 4096;       // tokens per sequence (prompt + generation)
  int64_t max_queue = 64;       // waiting requests beyond which submit() refuses
  int64_t prefill_chunk = 256;  // prompt tokens per sequence per step
  int64_t cache_page = 256;     // latent cache growth step, tokens
  CacheType cache_type = CacheType::kF32;
  int64_t idle_caches = 4;      // finished caches kept for prefix reuse
  // Speculative decoding: the model's MTP module (owned by the caller, outliving
  // the engine) drafts `draft` tokens per step; nullptr: plain decoding. Jobs'
  // sampling must pass speculative_sampling_problem().
  MtpModule* drafter = nullptr;
  int64_t draft = 1;
  // For tests: SpeculativeOptions::edit_drafts, told whose drafts they are.
  std::function<void(const GenerationJob& job, int64_t position, std::vector<int32_t>& drafts)> edit_drafts;
};

// One request's generation, shared between the HTTP handler (which waits on
// it) and the engine thread (which fills it).
struct GenerationJob {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;  // 0: the prompt only (echo), nothing generated
  SamplingOptions sampling;
  std::vector<int64_t> stop_ids;
  // Log-probabilities: -1 none; else every generated token's, with this many
  // most likely alternatives (the model's distribution, before sampling).
  int top_logprobs = -1;
  // Also every prompt token's after the first (echo): the prompt then runs
  // from an empty cache, each chunk in its own Model::forward call that
  // returns every row.
  bool score_prompt = false;

  std::atomic<bool> cancelled{false};  // set by the handler: client gone, or a stop string seen

  // Written by the engine under `mutex`, announced on `changed`.
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<int32_t> tokens;  // generated so far (a stop id included)
  std::vector<TokenLogprob> logprobs;         // one per entry of tokens, when top_logprobs >= 0
  std::vector<TokenLogprob> prompt_logprobs;  // score_prompt: prompt tokens 1.., complete once prompt_scored
  bool prompt_scored = false;
  bool done = false;
  std::string finish_reason;    // "stop", "length", "cancelled" or "error"
  std::string error;
  int64_t reused_prompt_tokens = 0;
  std::chrono::steady_clock::time_point submitted, first_token, finished;
};

struct EngineStats {
  int64_t queued = 0, active = 0, idle_caches = 0, cache_bytes = 0;
  int64_t steps = 0, prompt_tokens = 0, reused_prompt_tokens = 0, generated_tokens = 0, batched_rows = 0;
  int64_t speculative_steps = 0, drafted_tokens = 0, accepted_tokens = 0;  // with a drafter
};

class Engine {
 public:
  Engine(Model& model, EngineOptions options);
  ~Engine();  // finishes nothing: cancels what is left and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a job; false when the queue is full (the caller answers 503).
  bool submit(const std::shared_ptr<GenerationJob>& job);
  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }

 private:
  struct Sequence;
  struct IdleCache {
    std::unique_ptr<LatentCache> cache, mtp_cache;  // mtp_cache: with a drafter, rows [0, its length) valid
    std::vector<int32_t> tokens;  // what the cache holds
  };

  void run();
  void admit(std::vector<std::shared_ptr<GenerationJob>>& incoming);
  void step();
  // score_prompt jobs: the next chunk of the prompt, every row's logits kept.
  void score_prompt_chunk(Sequence& s);
  // Samples the sequence's next token from its logits row and hands it over;
  // finishes the job at a stop id or a limit. Returns whether it sampled.
  bool deliver(Sequence& s, const float* row);
  // Hands `token` (chosen from `row`, at `position`) to the job, finishing nothing.
  // Returns why the job ends with it ("stop", "length"), or nullptr.
  const char* publish(Sequence& s, int32_t token, const float* row, int64_t position);
  // With a drafter: the sequence's speculative step, when it runs alone.
  void speculative_step(Sequence& s);
  // The MTP module reads the hidden states the batched steps left for it, as
  // far as the tokens that follow them are known.
  void catch_up(Sequence& s);
  void finish(Sequence& s, const std::string& reason, const std::string& error = "");

  Model& model_;
  EngineOptions options_;
  mutable std::mutex mutex_;  // guards queue_, stopping_, stats_
  std::condition_variable wake_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  bool stopping_ = false;
  EngineStats stats_;

  // Engine thread only.
  std::vector<std::unique_ptr<Sequence>> active_;
  std::vector<IdleCache> idle_;
  std::vector<float> logits_, prompt_logits_, hidden_;
  std::thread thread_;
};

}  // namespace dsv2
