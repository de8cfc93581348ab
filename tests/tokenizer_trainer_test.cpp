// dsv2's BPE trainer against Hugging Face's BpeTrainer on the same corpus slice
// and settings (fixture from tools/make_tokenizer_fixtures.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace dsv2 {
namespace {

std::string corpus(const std::string& name) { return std::string(DSV2_CORPUS_DIR) + "/" + name; }

TEST(BpeTrainer, SameMergesAsHuggingFace) {
  if (!std::filesystem::exists(corpus("en/alice_in_wonderland.txt"))) GTEST_SKIP() << "shared corpus not present";
  const auto pre_json = deepseek_pre_tokenizer_json("deepseek-v2");
  const auto pre = make_pre_tokenizer(pre_json, "pre");
  std::unordered_map<std::string, uint64_t> counts;
  for (const char* f : {"en/alice_in_wonderland.txt", "zh/shijing.txt"}) count_words(read_text_file(corpus(f)), *pre, counts);
  BpeTrainerOptions options;
  options.vocab_size = 1000;
  options.special_tokens = deepseek_special_tokens();
  const TrainedBpe bpe = train_bpe(counts, options);

  const auto hf = nlohmann::json::parse(test::read_bytes(test::fixture("tokenizers/trainer_v2_1000/tokenizer.json")));
  std::vector<std::pair<std::string, std::string>> hf_merges;
  for (const auto& m : hf["model"]["merges"]) hf_merges.push_back({m[0], m[1]});
  ASSERT_EQ(bpe.merges.size(), hf_merges.size());
  EXPECT_EQ(bpe.merges, hf_merges);
  for (size_t id = 0; id < bpe.tokens.size(); ++id) EXPECT_EQ(hf["model"]["vocab"][bpe.tokens[id]], id) << bpe.tokens[id];
}

TEST(BpeTrainer, WrittenTokenizerLoadsAndEncodes) {
  const auto pre_json = deepseek_pre_tokenizer_json("deepseek-v3");
  const auto pre = make_pre_tokenizer(pre_json, "pre");
  std::unordered_map<std::string, uint64_t> counts;
  count_words("the cat sat on the mat 12345\nthe dog sat on the log 678\n猫坐在垫子上\n", *pre, counts);
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = deepseek_special_tokens();
  const TrainedBpe bpe = train_bpe(counts, options);
  EXPECT_EQ(bpe.tokens.size(), 8u + 256u + bpe.merges.size());

  test::TempDir dir;
  test::write_bytes(dir.path("tokenizer.json"), trained_tokenizer_json(bpe, pre_json, options.special_tokens).dump());
  test::write_bytes(dir.path("tokenizer_config.json"), trained_tokenizer_config_json(options.special_tokens).dump());
  const auto tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_FALSE(tok->chat_template().empty());
  const std::string text = "the cat sat on the log 12345 猫";
  const auto ids = tok->encode(text);
  EXPECT_EQ(ids.front(), 0);  // BOS
  EXPECT_EQ(tok->decode(ids, true), text);
  EXPECT_GE(tok->token_to_id("Ġsat"), 0);  // a merge learnt from the text
  EXPECT_LT(ids.size() + 8, text.size());   // and used
}

}  // namespace
}  // namespace dsv2
