#include "runtime/speculative.h"

#include <algorithm>
#include <random>
#include <utility>

#include "core/error.h"

namespace dsv2 {

namespace {

// A draw from unnormalised probabilities; the last token with mass when rounding runs past the end.
int32_t draw(const std::vector<float>& probs, std::mt19937_64& rng) {
  double total = 0.0;
  for (float p : probs) total += p;
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  int32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    last = static_cast<int32_t>(i);
    u -= probs[i];
    if (u < 0.0) return last;
  }
  return last;
}

}  // namespace

std::string speculative_sampling_problem(const SamplingOptions& s) {
  if (s.temperature == 0.0f) return "";
  if (s.frequency_penalty != 0.0f) return "frequency_penalty";
  if (s.presence_penalty != 0.0f) return "presence_penalty";
  if (s.repeat_penalty != 1.0f) return "repeat_penalty";
  return "";
}

SpeculativeDecoder::SpeculativeDecoder(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache,
                                       Sampler& sampler, const SamplingOptions& sampling, AttentionPath path,
                                       SpeculativeOptions options)
    : model_(model), mtp_(mtp), cache_(cache), mtp_cache_(mtp_cache), sampler_(sampler), path_(path),
      options_(std::move(options)), greedy_(sampling.temperature == 0.0f),
      rng_(sampling.seed ^ 0x9e3779b97f4a7c15ull) {
  require(options_.draft >= 1, "speculative decoding: --draft must be at least 1");
  const std::string problem = speculative_sampling_problem(sampling);
  if (!problem.empty())
    throw Error("speculative sampling cannot apply " + problem +
                " exactly (it depends on the tokens accepted within a step); use it without --speculative");
  const Config& c = model.config();
  logits_.resize((options_.draft + 1) * c.vocab_size);
  hidden_.resize((options_.draft + 1) * c.hidden_size);
  q_logits_.resize(c.vocab_size);
  g_.resize(c.hidden_size);
  q_.resize(options_.draft);
}

void SpeculativeDecoder::catch_up(const float* hidden, const int32_t* next_ids, int64_t rows) {
  if (rows == 0) return;
  require(mtp_cache_.length() + rows <= cache_.length() + 1, "speculative decoding: the MTP module ran ahead of the model");
  mtp_.forward(hidden, next_ids, rows, mtp_cache_, path_, q_logits_.data(), true, g_.data());
  pending_ = next_ids[rows - 1];
}

bool SpeculativeDecoder::step(int64_t max_new, const std::function<bool(int32_t, const float*)>& on_token,
                              SpeculativeStats& st) {
  const int64_t L = cache_.length(), vocab = model_.config().vocab_size;
  require(mtp_cache_.length() == L && pending_ >= 0, "speculative decoding: the MTP module is behind the model");
  // Drafts write rows L+1..L+n of the main cache and L..L+n-2 of the MTP cache.
  const int64_t n = std::max<int64_t>(
      0, std::min({options_.draft, max_new - 1, cache_.capacity() - L - 1, mtp_cache_.capacity() - L + 1}));
  drafts_.clear();
  for (int64_t k = 0; k < n; ++k) {
    if (k > 0)  // depth-1 MTP again, on its own output (rows L, L+1, ... are rolled back below)
      mtp_.forward(g_.data(), &drafts_.back(), 1, mtp_cache_, path_, q_logits_.data(), true, g_.data());
    if (greedy_) {
      drafts_.push_back(argmax(q_logits_.data(), vocab));
    } else {
      q_[k] = sampler_.probabilities(q_logits_.data());
      drafts_.push_back(draw(q_[k], rng_));
    }
  }
  if (greedy_ && options_.edit_drafts) options_.edit_drafts(L + 1, drafts_);

  tokens_.assign(1, pending_);
  tokens_.insert(tokens_.end(), drafts_.begin(), drafts_.end());
  model_.forward(tokens_.data(), n + 1, cache_, path_, logits_.data(), false, hidden_.data());
  ++st.steps;
  st.drafted += n;

  int64_t accepted = 0;
  for (int64_t k = 0; k <= n; ++k) {
    const float* row = logits_.data() + k * vocab;  // the main model's prediction for position L + k + 1
    int32_t token;
    if (greedy_) {
      token = sampler_.sample(row);  // the very calls plain decoding makes, penalties included
    } else {
      std::vector<float> p = sampler_.probabilities(row);
      if (k == n) {
        token = draw(p, rng_);  // all drafts passed: a bonus token from p
      } else {
        const int32_t x = drafts_[k];
        const double ratio = q_[k][x] > 0.0f ? static_cast<double>(p[x]) / q_[k][x] : 1.0;
        if (std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < ratio) {
          token = x;
        } else {  // rejected: p[x] < q[x], so the residual cannot draw x again
          std::vector<float> residual(vocab);
          double mass = 0.0;
          for (int64_t v = 0; v < vocab; ++v) mass += residual[v] = std::max(0.0f, p[v] - q_[k][v]);
          token = draw(mass > 0.0 ? residual : p, rng_);
        }
      }
    }
    const bool is_draft = k < n && token == drafts_[k];
    pending_ = token;
    if (!on_token(token, row)) {
      // Generation ends with this token: keep what precedes it, as plain decoding would.
      st.accepted += accepted;
      cache_.set_length(L + 1 + accepted);
      mtp_cache_.set_length(L);
      return false;
    }
    if (!is_draft) break;
    ++accepted;
  }
  st.accepted += accepted;

  // Roll back the rejected rows: the main cache keeps the old pending token and the accepted
  // drafts; the MTP cache drops its drafting rows and reads those positions with the main
  // model's hidden states, the last one paired with the new pending token.
  cache_.set_length(L + 1 + accepted);
  mtp_cache_.set_length(L);
  next_.assign(drafts_.begin(), drafts_.begin() + accepted);
  next_.push_back(pending_);
  catch_up(hidden_.data(), next_.data(), accepted + 1);
  return true;
}

std::vector<int32_t> generate_speculative(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const SpeculativeOptions& speculative,
                                          const std::function<bool(int32_t)>& on_token, SpeculativeStats* stats) {
  require(!prompt.empty(), "generate: empty prompt");
  Sampler sampler(options.sampling, model.config().vocab_size);
  SpeculativeDecoder decoder(model, mtp, cache, mtp_cache, sampler, options.sampling, options.path, speculative);
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  require(prompt_len + options.max_tokens <= cache.capacity() &&
              prompt_len + options.max_tokens + speculative.draft <= mtp_cache.capacity(),
          "speculative decoding: the caches are too small for the prompt, the new tokens and the drafts");
  const Config& c = model.config();
  SpeculativeStats local;
  SpeculativeStats& st = stats ? *stats : local;
  sampler.add_context(prompt.data(), prompt_len);

  std::vector<int32_t> out;
  // Reports a token; false when generation ends with it.
  auto emit = [&](int32_t id, const float*) {
    out.push_back(id);
    const bool stop = !options.ignore_stop &&
                      std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    return on_token(id) && !stop && static_cast<int64_t>(out.size()) < options.max_tokens;
  };

  cache.set_length(0);
  mtp_cache.set_length(0);
  std::vector<float> logits(c.vocab_size), hidden(prompt_len * c.hidden_size);
  model.forward(prompt.data(), prompt_len, cache, options.path, logits.data(), true, hidden.data());
  const int32_t first = sampler.sample(logits.data());  // the token at position prompt_len
  if (!emit(first, logits.data())) return out;
  // MTP rows 0..P-1 pair h_i with t_{i+1}; the last one with the pending token.
  std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
  next.push_back(first);
  decoder.catch_up(hidden.data(), next.data(), prompt_len);
  while (decoder.step(options.max_tokens - static_cast<int64_t>(out.size()), emit, st)) {
  }
  return out;
}

}  // namespace dsv2
