#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv2 {

double log_sum_exp(const float* logits, int64_t vocab) {
  double max = logits[0];
  for (int64_t v = 1; v < vocab; ++v) max = std::max<double>(max, logits[v]);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
  return max + std::log(sum);
}

TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t token, int top_n) {
  require(token >= 0 && token < vocab, "token_logprob: token id outside the vocabulary");
  const double lse = log_sum_exp(logits, vocab);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<double>(logits[token]) - lse;
  // A sorted list of at most top_n ids, kept by insertion: top_n is small (<= 20)
  // and most logits fall below the last kept one after the first few rows.
  const auto n = static_cast<size_t>(std::min<int64_t>(std::max(top_n, 0), vocab));
  std::vector<int32_t> best;
  best.reserve(n + 1);
  for (int64_t v = 0; v < vocab && n > 0; ++v) {
    if (best.size() == n && logits[v] <= logits[best.back()]) continue;  // ties keep the lower id
    auto more_likely = [logits](int64_t a, int32_t b) { return logits[a] > logits[b]; };
    auto at = std::upper_bound(best.begin(), best.end(), v, more_likely);
    best.insert(at, static_cast<int32_t>(v));
    if (best.size() > n) best.pop_back();
  }
  for (int32_t id : best) out.top.push_back({id, static_cast<double>(logits[id]) - lse});
  return out;
}

std::vector<double> sequence_logprobs(Model& model, const std::vector<int32_t>& ids, CacheType cache_type,
                                      int64_t chunk) {
  const auto n = static_cast<int64_t>(ids.size());
  std::vector<double> out;
  if (n < 2) return out;
  const int64_t vocab = model.config().vocab_size;
  LatentCache cache(model.config(), n, 0, cache_type);
  std::vector<float> logits(static_cast<size_t>(std::min(chunk, n) * vocab));
  // Every token runs, the last one too (its row predicts nothing here), so that
  // the chunks are exactly the engine's.
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t count = std::min(chunk, n - begin);
    model.forward(ids.data() + begin, count, cache, AttentionPath::kAbsorbed, logits.data());
    for (int64_t t = 0; t < count && begin + t + 1 < n; ++t) {
      const float* row = logits.data() + t * vocab;
      out.push_back(static_cast<double>(row[ids[begin + t + 1]]) - log_sum_exp(row, vocab));
    }
  }
  return out;
}

}  // namespace dsv2
