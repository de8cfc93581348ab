// Routing decisions on hand-worked examples (expected values computed by hand
// from the papers' definitions, not by the code under test).
#include <gtest/gtest.h>

#include <cmath>

#include "model/router.h"

namespace dsv2 {
namespace {

Config router_config(const std::string& method, const std::string& scoring, int64_t experts, int64_t k, int64_t groups,
                     int64_t topk_group) {
  Config c;
  c.n_routed_experts = experts;
  c.num_experts_per_tok = k;
  c.topk_method = method;
  c.scoring_func = scoring;
  c.n_group = groups;
  c.topk_group = topk_group;
  return c;
}

struct Routed {
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

Routed route(const Config& c, std::vector<float> logits, const std::vector<float>& bias = {}) {
  Routed r{std::vector<int32_t>(c.num_experts_per_tok), std::vector<float>(c.num_experts_per_tok)};
  route_tokens(c, logits.data(), bias.empty() ? nullptr : bias.data(), 1, r.experts.data(), r.weights.data());
  return r;
}

TEST(Router, GreedySoftmaxWithScaling) {
  // softmax(ln[1, 2, 3, 4]) = [0.1, 0.2, 0.3, 0.4]; top-2 = experts 3, 2.
  Config c = router_config("greedy", "softmax", 4, 2, 1, 1);
  c.routed_scaling_factor = 2.0;
  const Routed r = route(c, {std::log(1.f), std::log(2.f), std::log(3.f), std::log(4.f)});
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 2}));
  EXPECT_NEAR(r.weights[0], 0.8f, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.6f, 1e-6);
}

TEST(Router, NormTopkProb) {
  Config c = router_config("greedy", "softmax", 4, 2, 1, 1);
  c.norm_topk_prob = true;
  const Routed r = route(c, {std::log(1.f), std::log(2.f), std::log(3.f), std::log(4.f)});
  EXPECT_NEAR(r.weights[0], 4.0f / 7.0f, 1e-6);
  EXPECT_NEAR(r.weights[1], 3.0f / 7.0f, 1e-6);
}

TEST(Router, GroupLimitedGreedyKeepsBestGroupsByMax) {
  // s = [0.05, 0.45 | 0.3, 0.2]: group 0 has the best max, so greedy's {1, 2}
  // becomes {1, 0} when only one group may be used.
  const Config c = router_config("group_limited_greedy", "softmax", 4, 2, 2, 1);
  const Routed r = route(c, {std::log(.05f), std::log(.45f), std::log(.3f), std::log(.2f)});
  EXPECT_EQ(r.experts, (std::vector<int32_t>{1, 0}));
  EXPECT_NEAR(r.weights[0], 0.45f, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.05f, 1e-6);
}

TEST(Router, NoauxTcSelectsOnBiasedScoresButWeighsUnbiased) {
  // s = sigmoid([0, 1, 0, 0]) = [.5, σ(1), .5, .5]; with b = [-1, -1, -0.2, -2] the
  // biased scores are [-.5, σ(1)-1, .3, -1.5]. Group sums of top-2: g0 = σ(1)-1.5,
  // g1 = -1.2, so group 0 wins although expert 2 has the best biased score, and
  // its experts must win even though their biased scores are negative.
  Config c = router_config("noaux_tc", "sigmoid", 4, 2, 2, 1);
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  const Routed r = route(c, {0.f, 1.f, 0.f, 0.f}, {-1.f, -1.f, -0.2f, -2.f});
  EXPECT_EQ(r.experts, (std::vector<int32_t>{1, 0}));
  const float s1 = 1.0f / (1.0f + std::exp(-1.0f));
  EXPECT_NEAR(r.weights[0], 2.5f * s1 / (s1 + 0.5f), 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5f * 0.5f / (s1 + 0.5f), 1e-6);
}

TEST(Router, SeveralTokens) {
  const Config c = router_config("greedy", "softmax", 3, 1, 1, 1);
  const std::vector<float> logits{0, 5, 0, 9, 0, 0};
  std::vector<int32_t> experts(2);
  std::vector<float> weights(2);
  route_tokens(c, logits.data(), nullptr, 2, experts.data(), weights.data());
  EXPECT_EQ(experts, (std::vector<int32_t>{1, 0}));
}

}  // namespace
}  // namespace dsv2
