// Picks the next token from logits, with the controls of OpenAI's API and of
// llama.cpp. They apply in this order (docs/SERVER.md, "Sampling"):
//
//   1. logit_bias      logit[j] += bias[j]                      (OpenAI; -100 bans a token, +100 forces it)
//   2. repeat_penalty  over the last repeat_last_n tokens of the context, prompt included (llama.cpp):
//                      a positive logit is divided by it, a negative one multiplied (CTRL's penalty
//                      with the sign fixed, so a penalty never makes a token more likely)
//   3. frequency_penalty, presence_penalty over the tokens generated so far, not the prompt (OpenAI):
//                      logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty
//   4. temperature     0: the largest adjusted logit (greedy; steps 5-8 are skipped), else logit / T
//   5. top_k           the k largest
//   6. top_p           the smallest prefix (most likely first) whose probability reaches top_p
//   7. min_p           tokens with p >= min_p * p_max
//   8. a draw from a seeded generator, so a given seed always yields the same text.
//
// Steps 1-3 are llama.cpp's order (logit bias, then its penalties sampler,
// which divides before it subtracts). Steps 4-7 are Hugging Face's and vLLM's:
// the truncations see the tempered distribution. (llama.cpp's default chain
// applies temperature last, so there top-p and min-p see temperature 1.)
//
// A Sampler belongs to one sequence: it keeps the history the penalties need
// (a window of recent context tokens and counts of generated ones), so it can
// serve any decoding loop — generate, chat, the server's batches, RL rollouts.
// Its buffers are sized at construction: sampling allocates nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace dsv2 {

struct LogitBias {
  int32_t token;
  float bias;  // [-100, 100]
};

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int64_t top_k = 0;         // 0: no limit
  uint64_t seed = 0;
  float min_p = 0.0f;              // [0, 1]; 0: off
  float frequency_penalty = 0.0f;  // [-2, 2]; 0: off
  float presence_penalty = 0.0f;   // [-2, 2]; 0: off
  float repeat_penalty = 1.0f;     // > 0; 1: off
  int64_t repeat_last_n = 64;      // the repeat penalty's window: 0 none, -1 the whole context
  std::vector<LogitBias> logit_bias;  // a token listed twice takes its last bias
};

// An option out of range: `field` is its name in the API (snake_case), the
// message says what is allowed.
struct SamplingProblem {
  std::string field, message;
};
// The first option out of range, or nothing. `vocab_size` 0 skips the check
// that logit_bias names tokens of the vocabulary (for callers that do not know it yet).
std::optional<SamplingProblem> find_sampling_problem(const SamplingOptions& options, int64_t vocab_size);

class Sampler {
 public:
  // Throws Error naming the option when one is out of range (find_sampling_problem).
  Sampler(const SamplingOptions& options, int64_t vocab_size);

  // Tokens already in the context (the prompt, earlier turns): the repeat
  // penalty's window covers them; the frequency and presence penalties do not.
  // Ids outside the vocabulary are skipped: they can never be sampled anyway.
  void add_context(const int32_t* ids, int64_t n);
  // The next token for `logits` (vocab_size values); it is recorded as generated.
  int32_t sample(const float* logits);
  // The distribution sample() would draw from now (vocab_size probabilities,
  // 0 for every token cut off; one-hot at temperature 0). Records nothing.
  std::vector<float> probabilities(const float* logits);

 private:
  // Copies the logits into candidates_ (in id order) with steps 1-3 applied.
  void adjust(const float* logits);
  // The adjusted candidate with the largest logit (lowest id on ties), before truncate() sorts them.
  int32_t greedy() const;
  // Steps 4-7 over candidates_: tempers the logits and returns how many
  // candidates remain: [0, keep) of candidates_, the most likely first as far
  // as sorted_ (keep <= sorted_ unless every candidate in [0, end_) is kept).
  int64_t truncate();
  // Makes candidates_[0, n) the n most likely of [0, end_), in order.
  void sort_prefix(int64_t n);
  // Candidate i's unnormalised probability, exp(logit - max): 1 for the most likely.
  float weight(int64_t i) const;
  void remember(int32_t id, bool generated);

  SamplingOptions options_;
  int64_t vocab_size_;
  bool adjusts_;  // any of steps 1-3 is on
  std::mt19937_64 rng_;
  std::vector<LogitBias> bias_;                 // one entry per token
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<int32_t> window_;                 // ring of the last repeat_last_n context tokens
  int64_t window_next_ = 0, window_filled_ = 0;
  std::vector<int32_t> in_window_;              // per token: occurrences in the window
  std::vector<int32_t> generated_;              // per token: times generated
  double total_ = 0.0;                          // sum of the kept candidates' weights
  int64_t sorted_ = 0, end_ = 0;                // truncate(): candidates_[0, sorted_) sorted; [0, end_) in play (top_k)
  float max_logit_ = 0.0f;
};

// Index of the largest value; the lowest index wins ties.
int32_t argmax(const float* values, int64_t n);

}  // namespace dsv2
