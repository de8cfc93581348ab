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

std::optional<SamplingProblem> find_sampling_problem(const SamplingOptions& o, int64_t vocab_size) {
  // Written so that NaN fails every check.
  if (!(o.temperature >= 0.0f && std::isfinite(o.temperature))) return SamplingProblem{"temperature", "must be >= 0"};
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return SamplingProblem{"top_p", "must be in (0, 1]"};
  if (o.top_k < 0) return SamplingProblem{"top_k", "must be >= 0 (0: no limit)"};
  if (!(o.min_p >= 0.0f && o.min_p <= 1.0f)) return SamplingProblem{"min_p", "must be in [0, 1]"};
  if (!(o.frequency_penalty >= -2.0f && o.frequency_penalty <= 2.0f))
    return SamplingProblem{"frequency_penalty", "must be in [-2, 2]"};
  if (!(o.presence_penalty >= -2.0f && o.presence_penalty <= 2.0f))
    return SamplingProblem{"presence_penalty", "must be in [-2, 2]"};
  if (!(o.repeat_penalty > 0.0f && std::isfinite(o.repeat_penalty)))
    return SamplingProblem{"repeat_penalty", "must be > 0 (1: off)"};
  if (o.repeat_last_n < -1) return SamplingProblem{"repeat_last_n", "must be >= -1 (0: off, -1: the whole context)"};
  for (const LogitBias& b : o.logit_bias) {
    const std::string token = std::to_string(b.token);
    const std::string last = vocab_size > 0 ? std::to_string(vocab_size - 1) : std::string("n-1");
    if (b.token < 0 || (vocab_size > 0 && b.token >= vocab_size))
      return SamplingProblem{"logit_bias", "token " + token + " is not in the vocabulary (ids 0.." + last + ")"};
    if (!(b.bias >= -100.0f && b.bias <= 100.0f))
      return SamplingProblem{"logit_bias", "the bias of token " + token + " must be in [-100, 100]"};
  }
  return std::nullopt;
}

Sampler::Sampler(const SamplingOptions& options, int64_t vocab_size)
    : options_(options), vocab_size_(vocab_size), rng_(options.seed) {
  require(vocab_size > 0, "sampler: empty vocabulary");
  if (auto problem = find_sampling_problem(options, vocab_size))
    throw Error("sampling option " + problem->field + ": " + problem->message);
  for (const LogitBias& b : options.logit_bias) {
    auto same = std::find_if(bias_.begin(), bias_.end(), [&](const LogitBias& x) { return x.token == b.token; });
    if (same != bias_.end())
      same->bias = b.bias;
    else
      bias_.push_back(b);
  }
  candidates_.resize(vocab_size);
  const bool repeats = options.repeat_penalty != 1.0f && options.repeat_last_n != 0;
  if (repeats) in_window_.assign(vocab_size, 0);
  if (repeats && options.repeat_last_n > 0) window_.resize(options.repeat_last_n);
  if (options.frequency_penalty != 0.0f || options.presence_penalty != 0.0f) generated_.assign(vocab_size, 0);
  adjusts_ = !bias_.empty() || !in_window_.empty() || !generated_.empty();
}

void Sampler::remember(int32_t id, bool generated) {
  if (generated && !generated_.empty()) ++generated_[id];
  if (in_window_.empty()) return;
  ++in_window_[id];
  if (window_.empty()) return;  // -1: the window is the whole context, nothing leaves it
  if (window_filled_ == static_cast<int64_t>(window_.size()))
    --in_window_[window_[window_next_]];
  else
    ++window_filled_;
  window_[window_next_] = id;
  window_next_ = (window_next_ + 1) % static_cast<int64_t>(window_.size());
}

void Sampler::add_context(const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] >= 0 && ids[i] < vocab_size_) remember(ids[i], false);
}

void Sampler::adjust(const float* logits) {
  for (int64_t i = 0; i < vocab_size_; ++i) candidates_[i] = {logits[i], static_cast<int32_t>(i)};
  for (const LogitBias& b : bias_) candidates_[b.token].first += b.bias;
  if (!in_window_.empty()) {
    const float penalty = options_.repeat_penalty;
    for (int64_t i = 0; i < vocab_size_; ++i) {
      if (in_window_[i] == 0) continue;
      float& logit = candidates_[i].first;
      logit = logit <= 0.0f ? logit * penalty : logit / penalty;
    }
  }
  if (!generated_.empty()) {
    const float frequency = options_.frequency_penalty, presence = options_.presence_penalty;
    for (int64_t i = 0; i < vocab_size_; ++i)
      if (generated_[i] > 0) candidates_[i].first -= static_cast<float>(generated_[i]) * frequency + presence;
  }
}

int32_t Sampler::greedy() const {
  int32_t best = 0;
  for (int64_t i = 1; i < vocab_size_; ++i)
    if (candidates_[i].first > candidates_[best].first) best = static_cast<int32_t>(i);
  return best;
}

namespace {
// Highest first; ties keep the lower id first so the order is fully determined.
bool ranks_before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

void Sampler::sort_prefix(int64_t n) {
  if (n <= sorted_) return;
  // Grown geometrically, so that walking the prefix one candidate at a time
  // sorts no more than a few times what it reaches.
  n = std::min(end_, std::max({n, int64_t{64}, 2 * sorted_}));
  std::partial_sort(candidates_.begin() + sorted_, candidates_.begin() + n, candidates_.begin() + end_, ranks_before);
  sorted_ = n;
}

float Sampler::weight(int64_t i) const { return std::exp(candidates_[i].first - max_logit_); }

int64_t Sampler::truncate() {
  for (auto& c : candidates_) c.first /= options_.temperature;
  sorted_ = 0, end_ = vocab_size_;
  if (options_.top_k > 0 && options_.top_k < vocab_size_) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + options_.top_k, candidates_.end(), ranks_before);
    sorted_ = end_ = options_.top_k;
  }
  // The candidates are sorted only as far as top-p, min-p and the draw look:
  // a full sort of a 102400-token vocabulary took 7.5 ms a token, against
  // 0.7 ms for the weights and the first 256.
  max_logit_ = candidates_[sorted_ > 0 ? 0 : greedy()].first;  // (greedy(): the largest, candidates in id order)
  double total = 0.0;
  for (int64_t i = 0; i < end_; ++i) total += weight(i);
  int64_t keep = end_;
  if (options_.top_p < 1.0f) {  // the smallest prefix whose probability reaches top_p
    double cumulative = 0.0;
    for (int64_t i = 0; i < end_; ++i) {
      sort_prefix(i + 1);
      cumulative += weight(i) / total;
      if (cumulative >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (options_.min_p > 0.0f) {
    // The first candidate has weight exp(0) = 1, so a weight is p / p_max.
    int64_t k = 1;
    for (; k < keep; ++k) {
      sort_prefix(k + 1);
      if (weight(k) < options_.min_p) break;
    }
    keep = k;
  }
  if (keep == end_) {
    total_ = total;
  } else {
    total_ = 0.0;
    for (int64_t i = 0; i < keep; ++i) total_ += weight(i);
  }
  return keep;
}

int32_t Sampler::sample(const float* logits) {
  int32_t next;
  if (options_.temperature == 0.0f && !adjusts_) {
    next = argmax(logits, vocab_size_);
  } else {
    adjust(logits);
    if (options_.temperature == 0.0f) {
      next = greedy();
    } else {
      const int64_t keep = truncate();
      // A uniform draw from 53 random bits: identical on every platform for a given seed.
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total_;
      double cumulative = 0.0;
      next = -1;
      for (int64_t i = 0; i < keep; ++i) {
        sort_prefix(i + 1);
        cumulative += weight(i);
        if (u < cumulative) {
          next = candidates_[i].second;
          break;
        }
      }
      if (next < 0) {  // u at the very top of the range, past the rounded sum: the last kept candidate
        sort_prefix(keep);
        next = candidates_[keep - 1].second;
      }
    }
  }
  remember(next, true);
  return next;
}

std::vector<float> Sampler::probabilities(const float* logits) {
  std::vector<float> p(vocab_size_, 0.0f);
  adjust(logits);
  if (options_.temperature == 0.0f) {
    p[greedy()] = 1.0f;
    return p;
  }
  const int64_t keep = truncate();  // [0, keep): the kept candidates, sorted or (all of them) not
  for (int64_t i = 0; i < keep; ++i) p[candidates_[i].second] = static_cast<float>(weight(i) / total_);
  return p;
}

}  // namespace dsv2
