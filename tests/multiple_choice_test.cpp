// dsv2 eval --task: the task file's format and its errors, the harness's split
// of context and continuation, the scores of the shipped dsv2-mini against its
// logits computed the plain way, and the accuracy's error bars.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "runtime/multiple_choice.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {
namespace {

std::string shipped_model() { return test::fixture("../../models/dsv2-mini"); }

// The message load_choice_task throws for a file holding `text`.
std::string load_error(const test::TempDir& dir, const std::string& text) {
  test::write_bytes(dir.path("task.jsonl"), text);
  try {
    load_choice_task(dir.path("task.jsonl"));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(MultipleChoice, ReadsTaskFilesAndNamesTheLineOfABadOne) {
  test::TempDir dir;
  test::write_bytes(dir.path("task.jsonl"), R"({"context": "A", "choices": [" b", " c"], "answer": 1, "source": "x"})"
                                            "\n\n"
                                            R"({"context": "", "choices": ["d", "e", "f"], "answer": 0})"
                                            "\n");
  const std::vector<ChoiceItem> items = load_choice_task(dir.path("task.jsonl"));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].context, "A");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{" b", " c"}));
  EXPECT_EQ(items[0].answer, 1);
  EXPECT_EQ(items[1].choices.size(), 3u);

  const std::string good = R"({"context": "A", "choices": [" b", " c"], "answer": 0})";
  const std::string file = dir.path("task.jsonl");
  EXPECT_EQ(load_error(dir, good + "\n{not json\n").rfind(file + ":2: not valid JSON", 0), 0u);
  EXPECT_NE(load_error(dir, R"({"choices": [" b", " c"], "answer": 0})").find(file + ":1: 'context' must be a string"),
            std::string::npos);
  auto error_for = [&](const std::string& choices_and_answer) {
    return load_error(dir, R"({"context": "A", )" + choices_and_answer + "}");
  };
  EXPECT_NE(error_for(R"("choices": [" b"], "answer": 0)").find("at least two strings"), std::string::npos);
  EXPECT_NE(error_for(R"("choices": [" b", ""], "answer": 0)").find("non-empty string"), std::string::npos);
  EXPECT_NE(error_for(R"("choices": [" b", " c"], "answer": 2)").find("'answer' must be the index of the right choice, 0 to 1"),
            std::string::npos);
  EXPECT_NE(error_for(R"("choices": [" b", " c"], "answer": "0")").find("'answer'"), std::string::npos);
  EXPECT_NE(load_error(dir, "[1, 2]\n").find(":1: not a JSON object"), std::string::npos);
  EXPECT_NE(load_error(dir, "\n\n").find("no items"), std::string::npos);
  EXPECT_THROW(load_choice_task(dir.path("missing.jsonl")), Error);
}

TEST(MultipleChoice, SplitsContextAndContinuationAsTheHarness) {
  const auto tokenizer = Tokenizer::load(shipped_model());
  const EncodeOptions plain{false, true};
  // The context's trailing space belongs to the continuation's first token.
  const EncodedPair pair = encode_pair(*tokenizer, "The king said ", "nothing");
  EXPECT_EQ(pair.context, tokenizer->encode("The king said", plain));
  std::vector<int32_t> whole = pair.context;
  whole.insert(whole.end(), pair.continuation.begin(), pair.continuation.end());
  EXPECT_EQ(whole, tokenizer->encode("The king said nothing", plain));
  EXPECT_EQ(tokenizer->decode(pair.continuation), " nothing");
  // An empty context stands for BOS; no BOS is added otherwise.
  const EncodedPair bare = encode_pair(*tokenizer, "", " sea");
  EXPECT_EQ(bare.context, std::vector<int32_t>{tokenizer->bos_id()});
  EXPECT_EQ(bare.continuation, tokenizer->encode(" sea", plain));
  EXPECT_NE(encode_pair(*tokenizer, "A", " b").context.front(), tokenizer->bos_id());
}

TEST(MultipleChoice, ScoresAreTheLogitsLogLikelihoods) {
  Model model(shipped_model());
  const auto tokenizer = Tokenizer::load(shipped_model());
  // A Chinese choice: 3 bytes a character, so per-character and per-byte norms differ.
  const ChoiceItem item{"床前明月光，", {"疑是地上霜。", "the sea", "低头思故乡。"}, 0};
  const ItemScore score = score_item(model, *tokenizer, item, CacheType::kF32);
  ASSERT_EQ(score.loglikelihoods.size(), 3u);
  const int64_t vocab = model.config().vocab_size;
  std::vector<double> per_char;
  for (size_t c = 0; c < item.choices.size(); ++c) {
    const EncodedPair pair = encode_pair(*tokenizer, item.context, item.choices[c]);
    std::vector<int32_t> ids = pair.context;
    ids.insert(ids.end(), pair.continuation.begin(), pair.continuation.end());
    // Every row in one call, as `dsv2 logits` computes them.
    LatentCache cache(model.config(), static_cast<int64_t>(ids.size()));
    std::vector<float> logits(ids.size() * vocab);
    model.forward(ids.data(), static_cast<int64_t>(ids.size()), cache, AttentionPath::kAbsorbed, logits.data());
    double expected = 0.0;
    for (size_t i = pair.context.size(); i < ids.size(); ++i) {
      const float* row = logits.data() + (i - 1) * vocab;
      double max = row[0], sum = 0.0;
      for (int64_t v = 1; v < vocab; ++v) max = std::max<double>(max, row[v]);
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
      expected += row[ids[i]] - max - std::log(sum);
    }
    EXPECT_NEAR(score.loglikelihoods[c], expected, 1e-9) << item.choices[c];
    per_char.push_back(expected / (c == 1 ? 7.0 : 6.0));
  }
  const std::vector<double>& lls = score.loglikelihoods;
  EXPECT_EQ(score.pred, std::max_element(lls.begin(), lls.end()) - lls.begin());
  EXPECT_EQ(score.pred_norm, std::max_element(per_char.begin(), per_char.end()) - per_char.begin());
}

TEST(MultipleChoice, AccuracyHasTheHarnessStandardErrorAndAWilsonInterval) {
  const Accuracy a = accuracy(3, 4);
  EXPECT_DOUBLE_EQ(a.value, 0.75);
  EXPECT_NEAR(a.stderr_, 0.25, 1e-12);  // sample standard deviation sqrt(0.25) / sqrt(4)
  EXPECT_NEAR(a.low, 0.30064184258240184, 1e-12);
  EXPECT_NEAR(a.high, 0.9544127391902995, 1e-12);
  const Accuracy b = accuracy(58, 200);
  EXPECT_NEAR(b.stderr_, 0.03216633903375034, 1e-12);  // Python: statistics.stdev(x) / sqrt(200)
  EXPECT_NEAR(b.low, 0.23154025607067882, 1e-12);
  EXPECT_NEAR(b.high, 0.3563747810077731, 1e-12);
  const Accuracy all = accuracy(5, 5);
  EXPECT_EQ(all.stderr_, 0.0);
  EXPECT_EQ(all.high, 1.0);
  EXPECT_LT(all.low, 1.0);
}

}  // namespace
}  // namespace dsv2
