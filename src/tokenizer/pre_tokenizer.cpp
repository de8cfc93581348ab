#include "tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using namespace json_fields;
using Spans = std::vector<std::pair<size_t, size_t>>;

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Turns match spans into the pieces the behaviour keeps (as HF's NormalizedString::split).
void apply_behavior(const std::string& word, const Spans& matches, bool invert, Behavior behavior,
                    std::vector<std::string>& out) {
  struct Piece {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Piece> pieces;
  size_t previous = 0;
  for (auto [b, e] : matches) {
    if (previous != b) pieces.push_back({previous, b, invert});
    pieces.push_back({b, e, !invert});
    previous = e;
  }
  if (previous != word.size()) pieces.push_back({previous, word.size(), invert});

  std::vector<Piece> kept;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& p : pieces)
        if (!p.is_match) kept.push_back(p);
      break;
    case Behavior::kIsolated:
      kept = pieces;
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& p : pieces) {
        if (p.is_match && !previous_match && !kept.empty())
          kept.back().end = p.end;
        else
          kept.push_back(p);
        previous_match = p.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty())
          kept.back().begin = it->begin;
        else
          kept.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::kContiguous:
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (i > 0 && pieces[i].is_match == previous_match)
          kept.back().end = pieces[i].end;
        else
          kept.push_back(pieces[i]);
        previous_match = pieces[i].is_match;
      }
      break;
  }
  for (const auto& p : kept)
    if (p.end > p.begin) out.emplace_back(word, p.begin, p.end - p.begin);
}

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  throw Error(where + ".behavior: unknown behavior '" + name + "'");
}

class Split : public PreTokenizer {
 public:
  Split(const nlohmann::json& j, const std::string& where)
      : behavior_(parse_behavior(string_field(j, "behavior", where), where)),
        invert_(bool_field(j, "invert", where, false)) {
    auto [is_regex, pattern] = pattern_field(j, where);
    if (is_regex)
      regex_ = std::make_unique<Regex>(pattern, where + ".pattern.Regex");
    else
      literal_ = pattern;
  }
  void split(std::vector<std::string>& words) const override {
    std::vector<std::string> out;
    out.reserve(words.size() * 2);
    Spans matches;
    for (const auto& word : words) {
      if (regex_) {
        matches = regex_->find_all(word);
      } else {
        matches.clear();
        for (size_t at = literal_.empty() ? std::string::npos : word.find(literal_); at != std::string::npos;
             at = word.find(literal_, at + literal_.size()))
          matches.push_back({at, at + literal_.size()});
      }
      apply_behavior(word, matches, invert_, behavior_, out);
    }
    words.swap(out);
  }

 private:
  Behavior behavior_;
  bool invert_;
  std::unique_ptr<Regex> regex_;
  std::string literal_;
};

class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void split(std::vector<std::string>& words) const override {
    std::vector<std::string> out;
    Spans matches;
    for (const auto& word : words) {
      matches.clear();
      for (size_t pos = 0; pos < word.size();) {
        const size_t begin = pos;
        if (unicode::is_numeric(unicode::next_code_point(word, pos))) matches.push_back({begin, pos});
      }
      apply_behavior(word, matches, false, individual_ ? Behavior::kIsolated : Behavior::kContiguous, out);
    }
    words.swap(out);
  }

 private:
  bool individual_;
};

// GPT-2's split, used by ByteLevel when use_regex is set.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, where);
  }
  void split(std::vector<std::string>& words) const override {
    if (add_prefix_space_)
      for (auto& word : words)
        if (word.empty() || word[0] != ' ') word.insert(word.begin(), ' ');
    if (!regex_) return;
    std::vector<std::string> out;
    for (const auto& word : words) apply_behavior(word, regex_->find_all(word), false, Behavior::kIsolated, out);
    words.swap(out);
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<std::string>& words) const override {
    for (const auto& part : parts_) part->split(words);
  }
  bool byte_level() const override { return !parts_.empty() && parts_.back()->byte_level(); }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "Split") return std::make_unique<Split>(j, where);
  if (type == "Digits") return std::make_unique<Digits>(bool_field(j, "individual_digits", where, false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(bool_field(j, "add_prefix_space", where, true), bool_field(j, "use_regex", where, true), where);
  if (type == "Sequence") {
    const auto& list = field(j, "pretokenizers", where);
    if (!list.is_array()) throw Error(where + ".pretokenizers: expected an array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string item = where + ".pretokenizers[" + std::to_string(i) + "]";
      auto part = make_pre_tokenizer(list[i], item);
      if (!part) continue;
      // Byte-level mapping happens when words reach BPE, so nothing may split after it.
      if (!parts.empty() && parts.back()->byte_level())
        throw Error(item + ": dsv2 requires ByteLevel to be the last pre-tokenizer of a Sequence");
      parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw Error(where + ": unsupported pre_tokenizer type '" + type + "'");
}

}  // namespace dsv2
