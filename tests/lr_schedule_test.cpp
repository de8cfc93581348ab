// DeepSeek-V2's schedule: linear warm-up, then ×0.316 after 60% and again after
// 90% of the training tokens (not steps: a batch ramp makes early steps smaller).
#include <gtest/gtest.h>

#include "train/optimizer.h"

namespace dsv2 {
namespace {

TEST(LrSchedule, StepDecayFollowsTokensNotSteps) {
  LrSchedule s;
  s.peak = 1e-3, s.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(s.at(0, 100, 0.0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(9, 100, 0.05), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(60, 100, 0.59), 1e-3);  // step 60 of 100, but only 59% of the tokens
  EXPECT_DOUBLE_EQ(s.at(61, 100, 0.60), 1e-3 * 0.316);
  EXPECT_DOUBLE_EQ(s.at(95, 100, 0.899), 1e-3 * 0.316);
  EXPECT_DOUBLE_EQ(s.at(96, 100, 0.90), 1e-3 * 0.316 * 0.316);
}

TEST(LrSchedule, CosineAndConstant) {
  LrSchedule s;
  s.peak = 1e-3, s.warmup_steps = 0, s.kind = "cosine";
  EXPECT_DOUBLE_EQ(s.at(0, 100, 0.0), 1e-3);
  EXPECT_NEAR(s.at(50, 100, 0.5), 1e-3 * (0.1 + 0.9 * 0.5), 1e-15);
  EXPECT_NEAR(s.at(100, 100, 1.0), 1e-4, 1e-15);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(s.at(99, 100, 0.99), 1e-3);
}

TEST(BatchRamp, GrowsLinearlyToTheFullBatch) {
  const BatchRamp r{0.5, 100};
  EXPECT_DOUBLE_EQ(r.share(0), 0.5);
  EXPECT_DOUBLE_EQ(r.share(50), 0.75);
  EXPECT_DOUBLE_EQ(r.share(100), 1.0);
  EXPECT_DOUBLE_EQ(r.share(1000), 1.0);
}

}  // namespace
}  // namespace dsv2
