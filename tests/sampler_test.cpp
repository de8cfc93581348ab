#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "runtime/sampler.h"

namespace dsv2 {
namespace {

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler s({0.0f, 1.0f, 0, 7});
  const float logits[] = {0.1f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.sample(logits, 4), 1);  // ties go to the lower id
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const float logits[] = {0.1f, 0.3f, 2.0f, -1.0f};
  Sampler k1({1.0f, 1.0f, 1, 3});
  Sampler p({1.0f, 0.01f, 0, 3});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(k1.sample(logits, 4), 2);
    EXPECT_EQ(p.sample(logits, 4), 2);
  }
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  const float logits[] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({1.0f, 1.0f, 0, 42});
  int counts[3] = {0, 0, 0};
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(logits, 3)];
  EXPECT_NEAR(counts[0] / double(draws), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(draws), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(draws), 0.2, 0.02);
}

TEST(Sampler, TopPDropsTheTail) {
  // p = [0.5, 0.3, 0.2]: top_p 0.75 keeps the first two only.
  const float logits[] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({1.0f, 0.75f, 0, 1});
  for (int i = 0; i < 2000; ++i) EXPECT_NE(s.sample(logits, 3), 2);
}

TEST(Sampler, SameSeedSameDraws) {
  const float logits[] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  Sampler a({0.8f, 0.95f, 4, 123}), b({0.8f, 0.95f, 4, 123});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits, 5), b.sample(logits, 5));
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(Sampler({-1.0f, 1.0f, 0, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 0.0f, 0, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 1.5f, 0, 0}), Error);
}

}  // namespace
}  // namespace dsv2
