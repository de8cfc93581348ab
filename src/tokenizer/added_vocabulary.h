// tokenizer.json "added_tokens": strings cut out of the text before
// pre-tokenisation, as Hugging Face's AddedVocabulary does: tokens with
// normalized=false are found in the raw text, the others (by their normalised
// content) in the normalised text; at each position the longest token wins;
// single_word, lstrip and rstrip as in HF.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv2 {

class Normalizer;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// A piece of the input: either a token already decided (id >= 0), or text still
// to be normalised / pre-tokenised (id < 0).
struct Segment {
  std::string text;
  int32_t id = -1;
  bool normalized = false;  // text has been through the normalizer
};

class AddedVocabulary {
 public:
  void add(const AddedToken& token);
  // Builds the match tables; `normalizer` may be null.
  void finish(const Normalizer* normalizer);

  // Splits `text` into segments. With parse_special false, special tokens are
  // left inside the text around them (HF's encode_special_tokens).
  std::vector<Segment> split(const std::string& text, const Normalizer* normalizer, bool parse_special) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find_by_id(int32_t id) const;
  const AddedToken* find(std::string_view content) const;

 private:
  struct Pattern {
    std::string text;  // what is searched for
    size_t token;      // index into tokens_
  };
  void split_pass(const std::string& text, const std::vector<Pattern>& patterns, bool parse_special, bool normalized,
                  std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  std::vector<Pattern> raw_patterns_, normalized_patterns_;  // longest first
};

}  // namespace dsv2
