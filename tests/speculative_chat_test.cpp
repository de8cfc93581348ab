// dsv2 chat --speculative mtp end to end, on the fixture with an MTP layer
// (tests/fixtures/v3_mtp, whose tokenizer covers ASCII): a conversation piped
// through stdin gets the very replies greedy chat gives without drafts.
#include <gtest/gtest.h>

#include <algorithm>

#include "test_util.h"

namespace dsv2 {
namespace {

TEST(SpeculativeChat, GreedyRepliesEqualPlainChat) {
  test::TempDir tmp;
  test::write_bytes(tmp.path("in"), "Hello there.\nTell me a story about the sea.\nAnd then?\n");
  const std::string chat = "chat -m " + test::fixture("v3_mtp") + " --temperature 0 -n 24 -t 1 --system 'Be brief.'";
  const auto plain = test::run_dsv2(chat + " < " + tmp.path("in"));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_GE(std::count(plain.out.begin(), plain.out.end(), '\n'), 3) << plain.out;  // one reply per message
  for (const char* draft : {"1", "3"}) {
    const auto speculative = test::run_dsv2(chat + " --speculative mtp --draft " + draft + " < " + tmp.path("in"));
    ASSERT_EQ(speculative.exit_code, 0) << speculative.err;
    EXPECT_EQ(speculative.out, plain.out) << "draft " << draft;
  }
}

TEST(SpeculativeChat, SamplingWithARepeatPenaltyIsAUsageError) {
  test::TempDir tmp;
  test::write_bytes(tmp.path("in"), "Hello.\n");
  // chat's defaults sample with repeat penalty 1.1, which speculative sampling cannot apply exactly.
  const auto r = test::run_dsv2("chat -m " + test::fixture("v3_mtp") + " -t 1 --speculative mtp < " + tmp.path("in"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--repeat-penalty"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv2
