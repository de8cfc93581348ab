// The sampler against distributions computed by hand (the expected numbers come
// from the formulas in sampler.h, worked out on paper / in a calculator, not
// from the sampler), one control at a time and all together in their order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"

namespace dsv2 {
namespace {

// Logits whose softmax at temperature 1 is `p`.
std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> logits;
  for (double x : p) logits.push_back(static_cast<float>(std::log(x)));
  return logits;
}

void expect_distribution(const std::vector<float>& got, const std::vector<double>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 2e-6) << "token " << i;
}

// Makes `sampler` generate `ids` (each forced by logits that leave no other choice).
void generate_ids(Sampler& sampler, int64_t vocab, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    std::vector<float> forcing(vocab, -1e4f);
    forcing[id] = 0.0f;
    ASSERT_EQ(sampler.sample(forcing.data()), id);
  }
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler s({0.0f, 1.0f, 0, 7}, 4);
  const float logits[] = {0.1f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.sample(logits), 1);  // ties go to the lower id
  expect_distribution(s.probabilities(logits), {0, 1, 0, 0});
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const float logits[] = {0.1f, 0.3f, 2.0f, -1.0f};
  Sampler k1({1.0f, 1.0f, 1, 3}, 4);
  Sampler p({1.0f, 0.01f, 0, 3}, 4);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(k1.sample(logits), 2);
    EXPECT_EQ(p.sample(logits), 2);
  }
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  const float logits[] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({1.0f, 1.0f, 0, 42}, 3);
  int counts[3] = {0, 0, 0};
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(logits)];
  EXPECT_NEAR(counts[0] / double(draws), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(draws), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(draws), 0.2, 0.02);
}

TEST(Sampler, TopPDropsTheTail) {
  // p = [0.5, 0.3, 0.2]: top_p 0.75 keeps the first two only.
  const float logits[] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({1.0f, 0.75f, 0, 1}, 3);
  for (int i = 0; i < 2000; ++i) EXPECT_NE(s.sample(logits), 2);
  expect_distribution(s.probabilities(logits), {0.625, 0.375, 0});
}

TEST(Sampler, SameSeedSameDraws) {
  const float logits[] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  SamplingOptions o{0.8f, 0.95f, 4, 123};
  o.min_p = 0.1f;
  o.repeat_penalty = 1.3f;
  o.frequency_penalty = 0.2f;
  Sampler a(o, 5), b(o, 5);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits), b.sample(logits));
}

TEST(Sampler, LogitBiasIsAddedToTheLogits) {
  // p = [0.4, 0.3, 0.2, 0.1]; +ln 2 doubles token 3's weight to 0.2, -100 leaves token 0 e^-100 of
  // its weight (nothing, in float): [0, 0.3, 0.2, 0.2] / 0.7.
  const auto logits = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplingOptions o;
  o.logit_bias = {{3, std::log(2.0f)}, {0, -100.0f}};
  Sampler s(o, 4);
  expect_distribution(s.probabilities(logits.data()), {0, 0.428571, 0.285714, 0.285714});
  // A token listed twice takes its last bias; +100 forces a token even at temperature 0.
  o.logit_bias = {{1, -100.0f}, {1, 100.0f}};
  o.temperature = 0.0f;
  Sampler forced(o, 4);
  EXPECT_EQ(forced.sample(logits.data()), 1);
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  // Tokens 0 and 2 are in the context: 2 / 2 = 1 and -1 * 2 = -2; softmax([1, 1, -2, 0.5]).
  const float logits[] = {2.0f, 1.0f, -1.0f, 0.5f};
  SamplingOptions o;
  o.repeat_penalty = 2.0f;
  Sampler s(o, 4);
  const int32_t context[] = {0, 2, 0};
  s.add_context(context, 3);
  expect_distribution(s.probabilities(logits), {0.376461, 0.376461, 0.018743, 0.228335});
}

TEST(Sampler, RepeatPenaltyLooksAtTheLastNTokensOnly) {
  const float logits[] = {2.0f, 1.0f, -1.0f, 0.5f};
  SamplingOptions o;
  o.repeat_penalty = 2.0f;
  o.repeat_last_n = 2;
  Sampler s(o, 4);
  const int32_t context[] = {0, 2, 3};  // token 0 has left the window of 2
  s.add_context(context, 3);
  expect_distribution(s.probabilities(logits), {0.641038, 0.235825, 0.011741, 0.111396});  // softmax([2, 1, -2, 0.25])
  // Generated tokens enter the window too: after token 1 the window is {3, 1}.
  generate_ids(s, 4, {1});
  // softmax([2, 0.5, -1, 0.25])
  expect_distribution(s.probabilities(logits), {0.691233, 0.154235, 0.034414, 0.120118});
  // 0: off; -1: the whole context.
  o.repeat_last_n = 0;
  Sampler off(o, 4);
  off.add_context(context, 3);
  expect_distribution(off.probabilities(logits), {0.609460, 0.224208, 0.030343, 0.135989});  // softmax of the logits
  o.repeat_last_n = -1;
  Sampler all(o, 4);
  all.add_context(context, 3);
  // softmax([1, 1, -2, 0.25])
  expect_distribution(all.probabilities(logits), {0.396487, 0.396487, 0.019740, 0.187287});
}

TEST(Sampler, FrequencyAndPresencePenaltiesCountGeneratedTokensOnly) {
  // Generated 1, 1, 2; the prompt's 3s do not count. f = 0.5, p = 0.25:
  // token 1: -2 * 0.5 - 0.25 = -1.25, token 2: -0.5 - 0.25 = -0.75; softmax([0, -1.25, -0.75, 0]).
  const float zeros[] = {0.0f, 0.0f, 0.0f, 0.0f};
  SamplingOptions o;
  o.frequency_penalty = 0.5f;
  o.presence_penalty = 0.25f;
  Sampler s(o, 4);
  const int32_t prompt[] = {3, 3};
  s.add_context(prompt, 2);
  expect_distribution(s.probabilities(zeros), {0.25, 0.25, 0.25, 0.25});
  generate_ids(s, 4, {1, 1, 2});
  expect_distribution(s.probabilities(zeros), {0.362467, 0.103849, 0.171217, 0.362467});
}

TEST(Sampler, AdjustmentsApplyInTheDocumentedOrder) {
  // logits [-2, 3, 1, 0.5, 2]; context {0, 1}; generated 1 and 4 (which join the repeat window).
  //   1. bias +4 on token 0:           [2, 3, 1, 0.5, 2]     (penalty first: -2*2+4 = 0)
  //   2. repeat penalty 2 on 0, 1, 4:  [1, 1.5, 1, 0.5, 1]
  //   3. frequency 1 + presence 0.5 on the generated 1 and 4:
  //                                    [1, 0, 1, 0.5, -0.5]  (before 2: (3-1.5)/2 = 0.75 for token 1)
  //   4. temperature 0.5:              [2, 0, 2, 1, -1]      (before 2-3: token 1 at 6/2-1.5 = 1.5)
  // softmax([2, 0, 2, 1, -1]).
  const float logits[] = {-2.0f, 3.0f, 1.0f, 0.5f, 2.0f};
  SamplingOptions o;
  o.temperature = 0.5f;
  o.logit_bias = {{0, 4.0f}};
  o.repeat_penalty = 2.0f;
  o.frequency_penalty = 1.0f;
  o.presence_penalty = 0.5f;
  Sampler s(o, 5);
  const int32_t context[] = {0, 1};
  s.add_context(context, 2);
  generate_ids(s, 5, {1, 4});
  expect_distribution(s.probabilities(logits), {0.391696, 0.053010, 0.391696, 0.144097, 0.019501});
}

TEST(Sampler, TruncationsApplyInTheDocumentedOrder) {
  // p = [0.35, 0.25, 0.2, 0.12, 0.08].
  const auto logits = logits_of({0.35, 0.25, 0.2, 0.12, 0.08});
  SamplingOptions o;
  o.top_k = 4;  // [0.35, 0.25, 0.2, 0.12] / 0.92
  expect_distribution(Sampler(o, 5).probabilities(logits.data()), {0.380435, 0.271739, 0.217391, 0.130435, 0});
  // top_p 0.85 over what top_k left: 0.380 + 0.272 + 0.217 = 0.870 reaches it (over all five
  // it would take four): [0.35, 0.25, 0.2] / 0.8.
  o.top_p = 0.85f;
  expect_distribution(Sampler(o, 5).probabilities(logits.data()), {0.4375, 0.3125, 0.25, 0, 0});
  // min_p 0.6 keeps p >= 0.6 * 0.35 = 0.21: [0.35, 0.25] / 0.6.
  o.min_p = 0.6f;
  expect_distribution(Sampler(o, 5).probabilities(logits.data()), {0.583333, 0.416667, 0, 0, 0});
}

TEST(Sampler, MinPSeesTheTemperedDistribution) {
  // At temperature 2, p ∝ sqrt(p): relative to the most likely, token 2 has sqrt(0.2 / 0.35) = 0.756
  // (kept by min_p 0.6), token 3 sqrt(0.12 / 0.35) = 0.586 (dropped): sqrt([0.35, 0.25, 0.2]) normalised.
  const auto logits = logits_of({0.35, 0.25, 0.2, 0.12, 0.08});
  SamplingOptions o;
  o.temperature = 2.0f;
  o.min_p = 0.6f;
  expect_distribution(Sampler(o, 5).probabilities(logits.data()), {0.384455, 0.324924, 0.290621, 0, 0});
}

TEST(Sampler, SeededDrawsFollowTheFinalDistribution) {
  const float logits[] = {1.0f, 0.2f, 2.0f, -1.0f, 0.5f};
  SamplingOptions o{0.7f, 0.97f, 4, 99};
  o.min_p = 0.1f;
  o.logit_bias = {{1, 1.5f}};
  Sampler s(o, 5);
  const std::vector<float> p = s.probabilities(logits);
  std::vector<int> counts(5, 0);
  const int draws = 40000;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(logits)];
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(counts[i] / double(draws), p[i], 0.01) << "token " << i;
  EXPECT_EQ(counts[3], 0);  // cut by top_k
}

TEST(Sampler, ProblemsNameTheField) {
  auto field = [](auto change) {
    SamplingOptions o;
    change(o);
    const auto problem = find_sampling_problem(o, 10);
    return problem ? problem->field : std::string("none");
  };
  EXPECT_EQ(field([](SamplingOptions&) {}), "none");
  EXPECT_EQ(field([](SamplingOptions& o) { o.temperature = -1; }), "temperature");
  EXPECT_EQ(field([](SamplingOptions& o) { o.top_p = 0; }), "top_p");
  EXPECT_EQ(field([](SamplingOptions& o) { o.top_k = -1; }), "top_k");
  EXPECT_EQ(field([](SamplingOptions& o) { o.min_p = 1.5f; }), "min_p");
  EXPECT_EQ(field([](SamplingOptions& o) { o.min_p = NAN; }), "min_p");
  EXPECT_EQ(field([](SamplingOptions& o) { o.frequency_penalty = 2.5f; }), "frequency_penalty");
  EXPECT_EQ(field([](SamplingOptions& o) { o.presence_penalty = -2.5f; }), "presence_penalty");
  EXPECT_EQ(field([](SamplingOptions& o) { o.repeat_penalty = 0; }), "repeat_penalty");
  EXPECT_EQ(field([](SamplingOptions& o) { o.repeat_last_n = -2; }), "repeat_last_n");
  EXPECT_EQ(field([](SamplingOptions& o) { o.logit_bias = {{3, 101.0f}}; }), "logit_bias");
  EXPECT_EQ(field([](SamplingOptions& o) { o.logit_bias = {{10, 1.0f}}; }), "logit_bias");  // vocabulary is 0..9
  SamplingOptions o;
  o.logit_bias = {{10, 1.0f}};
  EXPECT_FALSE(find_sampling_problem(o, 0));  // vocabulary unknown: only the sign of the id is checked
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(Sampler({-1.0f, 1.0f, 0, 0}, 4), Error);
  EXPECT_THROW(Sampler({1.0f, 0.0f, 0, 0}, 4), Error);
  EXPECT_THROW(Sampler({1.0f, 1.5f, 0, 0}, 4), Error);
  SamplingOptions o;
  o.logit_bias = {{4, 1.0f}};
  EXPECT_THROW(Sampler(o, 4), Error);
}

// The sampler sorts only as much of the vocabulary as top-p, min-p and the
// draw reach. Against steps 4-8 written out with a full sort (this test's own
// code, the definition in sampler.h): the same kept tokens and probabilities,
// and the same draws from the same seed, on a large vocabulary with a long
// tail, under each truncation alone and together.
struct Kept {
  std::vector<std::pair<float, int32_t>> sorted;  // weights exp(l/T - max), most likely first
  double total = 0.0;
};
Kept truncate_by_full_sort(const std::vector<float>& logits, const SamplingOptions& o) {
  Kept k;
  for (size_t i = 0; i < logits.size(); ++i) k.sorted.push_back({logits[i] / o.temperature, static_cast<int32_t>(i)});
  std::sort(k.sorted.begin(), k.sorted.end(),
            [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (o.top_k > 0 && o.top_k < static_cast<int64_t>(k.sorted.size())) k.sorted.resize(o.top_k);
  const float max_logit = k.sorted[0].first;
  double total = 0.0;
  for (auto& c : k.sorted) total += c.first = std::exp(c.first - max_logit);
  size_t keep = k.sorted.size();
  if (o.top_p < 1.0f) {
    double cumulative = 0.0;
    for (size_t i = 0; i < keep; ++i)
      if ((cumulative += k.sorted[i].first / total) >= o.top_p) {
        keep = i + 1;
        break;
      }
  }
  if (o.min_p > 0.0f) {
    size_t n = 1;
    while (n < keep && k.sorted[n].first >= o.min_p) ++n;
    keep = n;
  }
  k.sorted.resize(keep);
  for (const auto& c : k.sorted) k.total += c.first;
  return k;
}

TEST(Sampler, SortsOnlyWhatItNeedsYetKeepsAndDrawsAsAFullSort) {
  const int64_t vocab = 20000;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::vector<float> logits(vocab);
  for (auto& l : logits) l = normal(rng);
  logits[123] = logits[456] = 9.0f;  // a tie at the top: the lower id ranks first
  struct Case {
    float temperature, top_p, min_p;
    int64_t top_k;
  };
  for (const Case c : {Case{1.0f, 1.0f, 0.0f, 0}, Case{0.7f, 0.9f, 0.0f, 0}, Case{1.3f, 0.995f, 0.0f, 0},
                       Case{1.0f, 1.0f, 0.02f, 0}, Case{1.0f, 1.0f, 0.0f, 300}, Case{0.8f, 0.95f, 0.001f, 5000}}) {
    SamplingOptions o;
    o.temperature = c.temperature, o.top_p = c.top_p, o.min_p = c.min_p, o.top_k = c.top_k, o.seed = 11;
    SCOPED_TRACE(testing::Message() << "T " << c.temperature << " top_p " << c.top_p << " min_p " << c.min_p << " top_k " << c.top_k);
    const Kept want = truncate_by_full_sort(logits, o);
    Sampler sampler(o, vocab);
    const std::vector<float> p = sampler.probabilities(logits.data());
    int64_t nonzero = 0;
    for (float x : p) nonzero += x > 0.0f;
    EXPECT_EQ(nonzero, static_cast<int64_t>(want.sorted.size()));
    for (const auto& [w, id] : want.sorted) EXPECT_NEAR(p[id], w / want.total, 1e-6 * (w / want.total) + 1e-12) << "token " << id;
    // draws: u = 53 random bits × total, then the first candidate (most likely first) whose running sum passes u
    std::mt19937_64 draws(o.seed);
    for (int d = 0; d < 200; ++d) {
      const double u = static_cast<double>(draws() >> 11) * 0x1.0p-53 * want.total;
      double cumulative = 0.0;
      int32_t expected = want.sorted.back().second;
      for (const auto& [w, id] : want.sorted)
        if (u < (cumulative += w)) {
          expected = id;
          break;
        }
      ASSERT_EQ(sampler.sample(logits.data()), expected) << "draw " << d;
    }
  }
}

}  // namespace
}  // namespace dsv2
