// Log-probabilities of tokens: the log-softmax of a row of float32 logits,
// computed in double, as the server's `logprobs` / `echo` and `dsv2 eval
// --task` report them. Shared so that both give the same numbers for the same
// rows.
#pragma once

#include <cstdint>
#include <vector>

#include "model/latent_cache.h"
#include "model/model.h"

namespace dsv2 {

struct TopLogprob {
  int32_t token;
  double logprob;
};

// One position: the log-probability of `token` there and the `top` most likely
// tokens (most likely first; equal values by the lower id).
struct TokenLogprob {
  int32_t token = -1;
  double logprob = 0.0;
  std::vector<TopLogprob> top;
};

// log(sum(exp(logits))) over a row, in double.
double log_sum_exp(const float* logits, int64_t vocab);

// log p(token) from a logits row and its `top_n` (>= 0) most likely tokens.
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t token, int top_n);

// Prompt positions run `chunk` tokens per Model::forward call, as the server's
// engine prefills: the same chunks give the same logits, so `dsv2 eval --task`
// and `dsv2 serve` agree to the last bit.
inline constexpr int64_t kPrefillChunk = 256;

// log p(ids[i] | ids[0..i)) for i = 1..n-1 (n - 1 values), running `ids` from
// an empty latent cache in chunks of `chunk` tokens.
std::vector<double> sequence_logprobs(Model& model, const std::vector<int32_t>& ids, CacheType cache_type,
                                      int64_t chunk = kPrefillChunk);

}  // namespace dsv2
