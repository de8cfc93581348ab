// Speculative decoding with the MTP drafter (runtime/speculative.h) on the
// fixture with a complete MTP layer (tests/fixtures/v3_mtp):
//  - greedy output equals plain greedy decoding, on many prompts, both
//    attention paths, f32, q8 and q4 caches, several draft lengths;
//  - with drafts that are mostly right (a test hook puts the plain greedy
//    continuation in, with some tokens spoilt), so that acceptance, partial
//    acceptance and the roll-back of the caches all happen;
//  - with sampling, the acceptance rule keeps the main model's distribution
//    (a chi-square test on the drafted position).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/mtp.h"
#include "runtime/speculative.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using test::fixture;

std::vector<std::vector<int32_t>> prompts(int64_t vocab) {
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> out{{5}, {2, 3}};
  for (int len : {3, 6, 9, 14, 20, 31}) {
    std::vector<int32_t> p(len);
    for (auto& id : p) id = static_cast<int32_t>(2 + rng() % (vocab - 2));
    out.push_back(p);
  }
  return out;
}

GenerationOptions greedy_options(AttentionPath path, int64_t tokens) {
  GenerationOptions o;
  o.max_tokens = tokens;
  o.sampling.temperature = 0.0f;
  o.ignore_stop = true;
  o.path = path;
  return o;
}

std::vector<int32_t> plain(Model& model, const std::vector<int32_t>& prompt, const GenerationOptions& o, CacheType type) {
  LatentCache cache(model.config(), static_cast<int64_t>(prompt.size()) + o.max_tokens, 0, type);
  return generate(model, cache, prompt, 0, o, [](int32_t) { return true; });
}

std::vector<int32_t> speculative(Model& model, MtpModule& mtp, const std::vector<int32_t>& prompt,
                                 const GenerationOptions& o, CacheType type, const SpeculativeOptions& s,
                                 SpeculativeStats* stats) {
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + o.max_tokens + s.draft;
  LatentCache cache(model.config(), capacity, 0, type);
  auto mtp_cache = mtp.make_cache(capacity, type);
  return generate_speculative(model, mtp, cache, *mtp_cache, prompt, o, s, [](int32_t) { return true; }, stats);
}

struct GreedyCase {
  AttentionPath path;
  CacheType cache;
};

class SpeculativeGreedy : public testing::TestWithParam<GreedyCase> {};

TEST_P(SpeculativeGreedy, EqualsPlainGreedy) {
  const GreedyCase& c = GetParam();
  Model model(fixture("v3_mtp"));
  MtpModule mtp(model);
  const GenerationOptions o = greedy_options(c.path, 24);
  SpeculativeStats total;
  for (const auto& prompt : prompts(model.config().vocab_size)) {
    const std::vector<int32_t> expected = plain(model, prompt, o, c.cache);
    for (int64_t draft : {1, 2, 4}) {
      SpeculativeOptions s;
      s.draft = draft;
      SpeculativeStats stats;
      EXPECT_EQ(speculative(model, mtp, prompt, o, c.cache, s, &stats), expected)
          << "prompt of " << prompt.size() << " tokens, draft " << draft;
      total.drafted += stats.drafted;
      total.accepted += stats.accepted;
    }
  }
  std::printf("MTP drafts: %lld drafted, %lld accepted\n", static_cast<long long>(total.drafted),
              static_cast<long long>(total.accepted));
}

// Drafts from an oracle that knows the plain continuation and spoils every third draft.
TEST_P(SpeculativeGreedy, RollsBackRejectedDrafts) {
  const GreedyCase& c = GetParam();
  Model model(fixture("v3_mtp"));
  MtpModule mtp(model);
  const GenerationOptions o = greedy_options(c.path, 30);
  for (const auto& prompt : prompts(model.config().vocab_size)) {
    const std::vector<int32_t> expected = plain(model, prompt, o, c.cache);
    for (int64_t draft : {1, 3, 5}) {
      SpeculativeOptions s;
      s.draft = draft;
      int64_t calls = 0;
      const int64_t first = static_cast<int64_t>(prompt.size());  // position of the first generated token
      s.edit_drafts = [&](int64_t position, std::vector<int32_t>& drafts) {
        for (size_t k = 0; k < drafts.size(); ++k) {
          const int64_t i = position + static_cast<int64_t>(k) - first;
          drafts[k] = expected.at(i);
          if ((calls + k) % 3 == 2) drafts[k] = (drafts[k] + 1) % static_cast<int32_t>(model.config().vocab_size);
        }
        ++calls;
      };
      SpeculativeStats stats;
      EXPECT_EQ(speculative(model, mtp, prompt, o, c.cache, s, &stats), expected)
          << "prompt of " << prompt.size() << " tokens, draft " << draft;
      EXPECT_GT(stats.accepted, 0);
      EXPECT_LT(stats.accepted, stats.drafted);
      EXPECT_LT(stats.steps, o.max_tokens - 1);  // fewer main-model steps than tokens
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, SpeculativeGreedy,
                         testing::Values(GreedyCase{AttentionPath::kNaive, CacheType::kF32},
                                         GreedyCase{AttentionPath::kAbsorbed, CacheType::kF32},
                                         GreedyCase{AttentionPath::kNaive, CacheType::kQ8},
                                         GreedyCase{AttentionPath::kAbsorbed, CacheType::kQ8},
                                         GreedyCase{AttentionPath::kNaive, CacheType::kQ4},
                                         GreedyCase{AttentionPath::kAbsorbed, CacheType::kQ4}),
                         [](const testing::TestParamInfo<GreedyCase>& info) {
                           return std::string(info.param.path == AttentionPath::kNaive ? "naive" : "absorbed") + "_" +
                                  cache_type_name(info.param.cache);
                         });

// The second generated token is the first drafted one. Its frequency over many
// seeds must follow the main model's marginal Σ_x1 p(x1) p(x2 | x1), which we
// compute exactly; Pearson's chi-square over bins of expected count ≥ 5.
TEST(SpeculativeSampling, KeepsTheMainModelsDistribution) {
  Model model(fixture("v3_mtp"));
  MtpModule mtp(model);
  const int64_t vocab = model.config().vocab_size;
  const std::vector<int32_t> prompt{17, 42, 99, 7};
  GenerationOptions o;
  o.max_tokens = 3;  // the first token, then one step that drafts one (room is left for the bonus token)
  o.ignore_stop = true;
  o.sampling.temperature = 1.0f;

  // Exact marginal of the second token.
  std::vector<double> expected(vocab, 0.0);
  {
    LatentCache cache(model.config(), 8);
    std::vector<float> logits(vocab);
    model.forward(prompt.data(), 4, cache, o.path, logits.data(), true);
    Sampler sampler(o.sampling, vocab);
    const std::vector<float> p1 = sampler.probabilities(logits.data());
    for (int32_t x1 = 0; x1 < vocab; ++x1) {
      if (p1[x1] <= 0.0f) continue;
      cache.set_length(4);
      model.forward(&x1, 1, cache, o.path, logits.data(), true);
      const std::vector<float> p2 = sampler.probabilities(logits.data());
      for (int64_t v = 0; v < vocab; ++v) expected[v] += static_cast<double>(p1[x1]) * p2[v];
    }
  }

  // 4000 draws: a rule that accepts with twice the ratio gave chi2 383 at 6000 (limit 195).
  const int runs = 4000;
  std::vector<int64_t> counts(vocab, 0);
  SpeculativeStats stats;
  SpeculativeOptions s;
  for (int r = 0; r < runs; ++r) {
    o.sampling.seed = 1000 + r;
    const auto out = speculative(model, mtp, prompt, o, CacheType::kF32, s, &stats);
    ASSERT_EQ(out.size(), 3u);
    ++counts[out[1]];
  }
  // Bins: tokens with expected count ≥ 5, the rest pooled.
  double chi2 = 0.0, pooled_expected = 0.0;
  int64_t pooled_count = 0, bins = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double e = expected[v] * runs;
    if (e >= 5.0) {
      chi2 += (counts[v] - e) * (counts[v] - e) / e;
      ++bins;
    } else {
      pooled_expected += e;
      pooled_count += counts[v];
    }
  }
  if (pooled_expected > 0.0) {
    chi2 += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
    ++bins;
  }
  // The chi-square quantile at 1 - 1e-4 for k = bins - 1 degrees of freedom (Wilson-Hilferty).
  const double k = static_cast<double>(bins - 1), z = 3.719;
  const double limit = k * std::pow(1.0 - 2.0 / (9.0 * k) + z * std::sqrt(2.0 / (9.0 * k)), 3.0);
  std::printf("speculative sampling: chi2 %.1f over %lld bins (limit %.1f); %lld of %lld drafts accepted\n", chi2,
              static_cast<long long>(bins), limit, static_cast<long long>(stats.accepted),
              static_cast<long long>(stats.drafted));
  EXPECT_LT(chi2, limit);
  EXPECT_GT(stats.accepted, 0);
  EXPECT_LT(stats.accepted, stats.drafted);  // both branches of the rule ran
}

TEST(SpeculativeSampling, RejectsPenalties) {
  Model model(fixture("v3_mtp"));
  MtpModule mtp(model);
  GenerationOptions o;
  o.max_tokens = 4;
  o.sampling.repeat_penalty = 1.3f;
  EXPECT_THROW(speculative(model, mtp, {3, 4}, o, CacheType::kF32, SpeculativeOptions{}, nullptr), Error);
}

}  // namespace
}  // namespace dsv2

namespace dsv2 {
namespace {

TEST(SpeculativeCli, GenerateMatchesPlainAndPrintsStats) {
  const std::string model = "-m " + fixture("v3_mtp") + " --ids '9 8 7 6' -n 16 --temperature 0 --ignore-eos";
  const auto plain_run = test::run_dsv2("generate " + model);
  const auto spec_run = test::run_dsv2("generate " + model + " --speculative mtp --draft 3 --attn naive --stats");
  ASSERT_EQ(plain_run.exit_code, 0) << plain_run.err;
  ASSERT_EQ(spec_run.exit_code, 0) << spec_run.err;
  EXPECT_EQ(spec_run.out, plain_run.out);
  const auto stats = nlohmann::json::parse(spec_run.err.substr(spec_run.err.find('{')));
  EXPECT_EQ(stats["tokens"], 16);
  EXPECT_GT(stats["tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(stats["drafted"].get<int64_t>(), 0);
  EXPECT_GE(stats["accepted"].get<int64_t>(), 0);
}

TEST(SpeculativeCli, BenchReportsGreedyAgainstSpeculative) {
  const auto r = test::run_dsv2("bench -m " + fixture("v3_mtp") +
                                " --prompt 8 --gen 12 --speculative mtp --draft 2 --step-runs 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["greedy_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["speculative_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["drafted"].get<int64_t>(), 0);
  EXPECT_EQ(j["draft"], 2);
  // The step times, and the speedup they imply: (1 + a + a^2) / ((verify + 2 mtp) / step_1) at a = 0.9.
  EXPECT_EQ(j["step_runs"], 3);
  const double step = j["step_1_s"], verify = j["verify_s"], mtp = j["mtp_draft_s"];
  for (const char* key : {"step_1_s", "verify_s", "mtp_draft_s", "step_1_cpu_s", "verify_cpu_s", "mtp_draft_cpu_s"})
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  EXPECT_NEAR(j["implied_speedup"]["0.9"].get<double>(), (1 + 0.9 + 0.81) / ((verify + 2 * mtp) / step), 1e-9);
  const auto usage = test::run_dsv2("bench -m " + fixture("v3_mtp") + " --step-runs 3");
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("--step-runs"), std::string::npos) << usage.err;
}

TEST(SpeculativeCli, BadInputsAreOneLineErrors) {
  const auto no_mtp = test::run_dsv2("generate -m " + fixture("v2_lite") + " --ids '3 4' -n 4 --speculative mtp");
  EXPECT_EQ(no_mtp.exit_code, 1);
  EXPECT_NE(no_mtp.err.find("no MTP layer"), std::string::npos) << no_mtp.err;
  EXPECT_EQ(std::count(no_mtp.err.begin(), no_mtp.err.end(), '\n'), 1) << no_mtp.err;
  const auto kind = test::run_dsv2("generate -m " + fixture("v3_mtp") + " --ids '3 4' -n 4 --speculative medusa");
  EXPECT_EQ(kind.exit_code, 2);
  const auto penalty = test::run_dsv2("generate -m " + fixture("v3_mtp") +
                                      " --ids '3 4' -n 4 --speculative mtp --frequency-penalty 0.5");
  EXPECT_EQ(penalty.exit_code, 2);
  EXPECT_NE(penalty.err.find("--frequency-penalty 0"), std::string::npos) << penalty.err;
}

}  // namespace
}  // namespace dsv2
