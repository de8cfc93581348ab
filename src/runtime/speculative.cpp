#include "runtime/speculative.h"

#include <algorithm>
#include <random>

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

std::vector<int32_t> generate_speculative(Model& model, MtpModule& mtp, LatentCache& cache, LatentCache& mtp_cache,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const SpeculativeOptions& speculative,
                                          const std::function<bool(int32_t)>& on_token, SpeculativeStats* stats) {
  require(!prompt.empty(), "generate: empty prompt");
  require(speculative.draft >= 1, "speculative decoding: --draft must be at least 1");
  const std::string problem = speculative_sampling_problem(options.sampling);
  if (!problem.empty())
    throw Error("speculative sampling cannot apply " + problem +
                " exactly (it depends on the tokens accepted within a step); use it without --speculative");
  const int64_t prompt_len = static_cast<int64_t>(prompt.size()), max_draft = speculative.draft;
  require(prompt_len + options.max_tokens <= cache.capacity() &&
              prompt_len + options.max_tokens + max_draft <= mtp_cache.capacity(),
          "speculative decoding: the caches are too small for the prompt, the new tokens and the drafts");
  const Config& c = model.config();
  const int64_t vocab = c.vocab_size, d = c.hidden_size;
  const bool greedy = options.sampling.temperature == 0.0f;
  SpeculativeStats local;
  SpeculativeStats& st = stats ? *stats : local;

  std::vector<float> logits((max_draft + 1) * vocab), hidden(std::max(prompt_len, max_draft + 1) * d);
  std::vector<float> q_logits(vocab), g(d);  // the MTP's logits and output state for the next draft
  std::vector<std::vector<float>> q(max_draft);  // the draft distributions (sampling)
  Sampler sampler(options.sampling, vocab);
  sampler.add_context(prompt.data(), prompt_len);
  std::mt19937_64 rng(options.sampling.seed ^ 0x9e3779b97f4a7c15ull);  // acceptance draws, apart from the sampler's
  std::uniform_real_distribution<double> uniform(0.0, 1.0);

  std::vector<int32_t> out;
  // Reports a token; false when generation ends with it.
  auto emit = [&](int32_t id) {
    out.push_back(id);
    const bool stop = !options.ignore_stop &&
                      std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    return on_token(id) && !stop && static_cast<int64_t>(out.size()) < options.max_tokens;
  };

  cache.set_length(0);
  mtp_cache.set_length(0);
  model.forward(prompt.data(), prompt_len, cache, options.path, logits.data(), true, hidden.data());
  int32_t pending = sampler.sample(logits.data());  // the token at position cache.length()
  if (!emit(pending)) return out;
  // MTP rows 0..P-1 pair h_i with t_{i+1}; the last one with the pending token.
  std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
  next.push_back(pending);
  mtp.forward(hidden.data(), next.data(), prompt_len, mtp_cache, options.path, q_logits.data(), true, g.data());

  std::vector<int32_t> drafts, tokens;
  for (;;) {
    // Invariant: both caches hold positions [0, L); the pending token sits at L; q_logits predict L + 1.
    const int64_t L = cache.length();
    const int64_t n = std::min<int64_t>(max_draft, options.max_tokens - static_cast<int64_t>(out.size()) - 1);
    drafts.clear();
    for (int64_t k = 0; k < n; ++k) {
      if (k > 0)  // depth-1 MTP again, on its own output (rows L, L+1, ... are rolled back below)
        mtp.forward(g.data(), &drafts.back(), 1, mtp_cache, options.path, q_logits.data(), true, g.data());
      if (greedy) {
        drafts.push_back(argmax(q_logits.data(), vocab));
      } else {
        q[k] = sampler.probabilities(q_logits.data());
        drafts.push_back(draw(q[k], rng));
      }
    }
    if (greedy && speculative.edit_drafts) speculative.edit_drafts(L + 1, drafts);

    tokens.assign(1, pending);
    tokens.insert(tokens.end(), drafts.begin(), drafts.end());
    model.forward(tokens.data(), n + 1, cache, options.path, logits.data(), false, hidden.data());
    ++st.steps;
    st.drafted += n;

    int64_t accepted = 0;
    bool finished = false;
    for (int64_t k = 0; k <= n; ++k) {
      const float* row = logits.data() + k * vocab;  // the main model's prediction for position L + k + 1
      int32_t token;
      if (greedy) {
        token = sampler.sample(row);  // the very calls plain decoding makes, penalties included
      } else {
        std::vector<float> p = sampler.probabilities(row);
        if (k == n) {
          token = draw(p, rng);  // all drafts passed: a bonus token from p
        } else {
          const int32_t x = drafts[k];
          const double ratio = q[k][x] > 0.0f ? static_cast<double>(p[x]) / q[k][x] : 1.0;
          if (uniform(rng) < ratio) {
            token = x;
          } else {  // rejected: p[x] < q[x], so the residual cannot draw x again
            std::vector<float> residual(vocab);
            double mass = 0.0;
            for (int64_t v = 0; v < vocab; ++v) mass += residual[v] = std::max(0.0f, p[v] - q[k][v]);
            token = draw(mass > 0.0 ? residual : p, rng);
          }
        }
      }
      const bool is_draft = k < n && token == drafts[k];
      pending = token;
      if (!emit(token)) {
        finished = true;
        break;
      }
      if (!is_draft) break;
      ++accepted;
    }
    st.accepted += accepted;
    if (finished) return out;

    // Roll back the rejected rows: the main cache keeps the old pending token and the accepted
    // drafts; the MTP cache drops its drafting rows and reads those positions with the main
    // model's hidden states, the last one paired with the new pending token.
    cache.set_length(L + 1 + accepted);
    mtp_cache.set_length(L);
    next.assign(drafts.begin(), drafts.begin() + accepted);
    next.push_back(pending);
    mtp.forward(hidden.data(), next.data(), accepted + 1, mtp_cache, options.path, q_logits.data(), true, g.data());
  }
}

}  // namespace dsv2
