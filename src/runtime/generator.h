// The decoding loop shared by `dsv2 generate`, `dsv2 chat` (and the server):
// prefill what the cache does not hold yet, then sample one token at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv2 {

struct GenerationOptions {
  int64_t max_tokens = 32;
  SamplingOptions sampling;
  std::vector<int64_t> stop_ids;  // generation ends after one of these (it is reported, then stops)
  bool ignore_stop = false;
  AttentionPath path = AttentionPath::kAuto;
};

// `cache` may already hold a prefix of `prompt` (tokens of an earlier turn):
// pass how many leading tokens it holds in `cached`; the rest is prefilled.
// on_token(id) is called for every generated id; returning false stops early.
// Returns the generated ids.
std::vector<int32_t> generate(Model& model, LatentCache& cache, const std::vector<int32_t>& prompt, int64_t cached,
                              const GenerationOptions& options, const std::function<bool(int32_t)>& on_token);

// Number of leading tokens two sequences share.
int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b);

}  // namespace dsv2
