// Malformed tokenizer files are rejected with the file and JSON path named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using nlohmann::json;

json minimal() {
  return json::parse(R"({"version": "1.0", "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

void expect_rejected(const std::string& text, std::initializer_list<std::string> needles) {
  test::TempDir dir;
  test::write_bytes(dir.path("tokenizer.json"), text);
  try {
    Tokenizer::load(dir.path());
    FAIL() << "accepted: " << text;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("tokenizer.json"), std::string::npos) << message;
    for (const auto& n : needles) EXPECT_NE(message.find(n), std::string::npos) << message;
  }
}

json with(const char* path, json value) {
  json j = minimal();
  j[json::json_pointer(path)] = std::move(value);
  return j;
}

TEST(TokenizerErrors, MalformedFiles) {
  expect_rejected("{\"model\": ", {"not valid JSON"});
  expect_rejected("[1, 2]", {"expected a JSON object"});
  expect_rejected(json::object().dump(), {"missing field 'model'"});
  expect_rejected(with("/model/type", "Unigram").dump(), {"model.type", "Unigram"});
  expect_rejected(with("/model/vocab", json::array()).dump(), {"model.vocab"});
  expect_rejected(with("/model/vocab/a", -3).dump(), {"model.vocab['a']"});
  expect_rejected(with("/model/merges", json::array({"a c"})).dump(), {"model.merges[0]", "'c'"});
  expect_rejected(with("/model/merges", json::array({"ab"})).dump(), {"model.merges[0]"});
  expect_rejected(with("/model/merges", json::array({json::array({1, 2})})).dump(), {"model.merges[0]"});
  expect_rejected(with("/pre_tokenizer", json{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}).dump(),
                  {"pre_tokenizer.pattern.Regex", "invalid regex"});
  expect_rejected(with("/pre_tokenizer", json{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}).dump(),
                  {"pre_tokenizer.behavior", "Sideways"});
  expect_rejected(with("/pre_tokenizer", json{{"type", "Sequence"}, {"pretokenizers", {{{"type", "Magic"}}}}}).dump(),
                  {"pre_tokenizer.pretokenizers[0]", "Magic"});
  expect_rejected(with("/pre_tokenizer", json{{"type", "Sequence"}, {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}}).dump(),
                  {"pretokenizers[1]", "ByteLevel"});
  expect_rejected(with("/normalizer", json{{"type", "Replace"}, {"pattern", {{"Nope", "x"}}}, {"content", "y"}}).dump(),
                  {"normalizer.pattern"});
  expect_rejected(with("/normalizer", json{{"type", "Sequence"}, {"normalizers", 5}}).dump(), {"normalizer.normalizers"});
  expect_rejected(with("/decoder", json{{"type", "WordPiece"}}).dump(), {"decoder", "WordPiece"});
  expect_rejected(with("/added_tokens", json::array({{{"content", "x"}}})).dump(), {"added_tokens[0]", "'id'"});
  expect_rejected(with("/added_tokens", json::array({{{"id", 5}, {"content", ""}}})).dump(), {"added_tokens[0].content"});
  expect_rejected(with("/post_processor", json{{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}},
                                            {"special_tokens", json::object()}}).dump(),
                  {"post_processor.special_tokens", "<s>"});
  expect_rejected(with("/post_processor", json{{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}},
                                            {"special_tokens", {{"<s>", {{"ids", {99}}}}}}}).dump(),
                  {"post_processor", "99"});
}

TEST(TokenizerErrors, BadTokenizerConfig) {
  test::TempDir dir;
  test::write_bytes(dir.path("tokenizer.json"), minimal().dump());
  test::write_bytes(dir.path("tokenizer_config.json"), R"({"bos_token": "<nope>"})");
  try {
    Tokenizer::load(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: field 'bos_token' names '<nope>'"), std::string::npos) << e.what();
  }
  test::write_bytes(dir.path("tokenizer_config.json"), R"({"chat_template": 7})");
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);
  test::write_bytes(dir.path("tokenizer_config.json"), "{");
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);
}

TEST(TokenizerErrors, MinimalTokenizerWorks) {
  test::TempDir dir;
  test::write_bytes(dir.path("tokenizer.json"), minimal().dump());
  const auto tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("ba"), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(tok->encode("abc"), (std::vector<int32_t>{2}));  // 'c' has no token and no unk: dropped, as in HF
  EXPECT_THROW(tok->decode({7}), Error);
}

TEST(Unicode, InvalidUtf8BecomesReplacementCharacters) {
  // Python's bytes.decode("utf-8", "replace") on the same inputs.
  EXPECT_EQ(unicode::to_valid_utf8("\xff"), "\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("abc\xe4\xb8"), "abc\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("\xc0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("\xf4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("ok \xe4\xb8\xad"), "ok \xe4\xb8\xad");
}

TEST(Unicode, StreamingHoldsBackOnlyUnfinishedCharacters) {
  EXPECT_EQ(unicode::complete_prefix_length("ab\xe4\xb8"), 2u);      // 中 still missing a byte
  EXPECT_EQ(unicode::complete_prefix_length("ab\xe4\xb8\xad"), 5u);  // complete
  EXPECT_EQ(unicode::complete_prefix_length("ab\xe4\x41"), 4u);      // can never complete: emit (as U+FFFD)
  EXPECT_EQ(unicode::complete_prefix_length("\xf0\x9f\x91"), 0u);    // emoji in progress
  EXPECT_EQ(unicode::complete_prefix_length("\xff"), 1u);
  EXPECT_EQ(unicode::complete_prefix_length(""), 0u);
}

}  // namespace
}  // namespace dsv2
