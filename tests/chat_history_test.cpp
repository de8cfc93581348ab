// A conversation kept within the context: the oldest whole turns go first, a
// leading system message and the newest message stay.
#include <gtest/gtest.h>

#include "runtime/chat_history.h"

namespace dsv2 {
namespace {

std::vector<ChatMessage> conversation(bool system) {
  std::vector<ChatMessage> m;
  if (system) m.push_back({"system", "be brief"});
  for (const char* turn : {"1", "2", "3"}) {
    m.push_back({"user", std::string("question ") + turn});
    m.push_back({"assistant", std::string("answer ") + turn});
  }
  m.push_back({"user", "question 4"});
  return m;
}

std::string contents(const std::vector<ChatMessage>& messages) {
  std::string s;
  for (const auto& m : messages) s += (s.empty() ? "" : "|") + m.content;
  return s;
}

// Fits while the conversation has at most `n` messages.
auto at_most(size_t n) {
  return [n](const std::vector<ChatMessage>& m) { return m.size() <= n; };
}

TEST(ChatHistory, NothingIsDroppedWhenItFits) {
  auto m = conversation(true);
  EXPECT_EQ(drop_oldest_turns(m, at_most(8)), 0u);
  EXPECT_EQ(m.size(), 8u);
}

TEST(ChatHistory, DropsTheOldestWholeTurnsKeepingTheSystemMessage) {
  auto m = conversation(true);
  EXPECT_EQ(drop_oldest_turns(m, at_most(5)), 4u);  // two question-answer pairs; one would leave 6
  EXPECT_EQ(contents(m), "be brief|question 3|answer 3|question 4");
  auto without_system = conversation(false);
  EXPECT_EQ(drop_oldest_turns(without_system, at_most(3)), 4u);
  EXPECT_EQ(contents(without_system), "question 3|answer 3|question 4");
}

TEST(ChatHistory, TheNewestMessageStaysEvenIfNothingFits) {
  auto m = conversation(true);
  EXPECT_EQ(drop_oldest_turns(m, at_most(0)), 6u);
  EXPECT_EQ(contents(m), "be brief|question 4");
}

TEST(ChatHistory, ATurnIsAUserMessageWithEveryReplyUpToTheNextOne) {
  std::vector<ChatMessage> m = {{"user", "q1"}, {"assistant", "a1"}, {"assistant", "a1 more"}, {"user", "q2"}};
  EXPECT_EQ(drop_oldest_turns(m, at_most(3)), 3u);
  EXPECT_EQ(contents(m), "q2");
}

}  // namespace
}  // namespace dsv2
