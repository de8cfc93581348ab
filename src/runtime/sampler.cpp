#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv2 {

int32_t argmax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (values[i] > values[best]) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  require(options.temperature >= 0.0f && std::isfinite(options.temperature), "temperature must be >= 0");
  require(options.top_p > 0.0f && options.top_p <= 1.0f, "top-p must be in (0, 1]");
  require(options.top_k >= 0, "top-k must be >= 0");
}

int32_t Sampler::sample(const float* logits, int64_t vocab_size) {
  if (options_.temperature == 0.0f) return argmax(logits, vocab_size);
  candidates_.resize(vocab_size);
  for (int64_t i = 0; i < vocab_size; ++i) candidates_[i] = {logits[i] / options_.temperature, static_cast<int32_t>(i)};
  // Highest first; ties keep the lower id first so the order is fully determined.
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  int64_t keep = vocab_size;
  if (options_.top_k > 0 && options_.top_k < vocab_size) {
    keep = options_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  const float max_logit = candidates_[0].first;
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) total += candidates_[i].first = std::exp(candidates_[i].first - max_logit);
  if (options_.top_p < 1.0f) {  // the smallest prefix whose probability reaches top_p
    double cumulative = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      cumulative += candidates_[i].first / total;
      if (cumulative >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
    total = 0.0;
    for (int64_t i = 0; i < keep; ++i) total += candidates_[i].first;
  }
  // A uniform draw from 53 random bits: identical on every platform for a given seed.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    cumulative += candidates_[i].first;
    if (u < cumulative) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace dsv2
