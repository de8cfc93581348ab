#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

// Last / first code point of a string, or 0 when empty.
char32_t last_char(std::string_view s) {
  if (s.empty()) return 0;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return unicode::next_code_point(s, start);
}
char32_t first_char(std::string_view s) {
  size_t pos = 0;
  return s.empty() ? 0 : unicode::next_code_point(s, pos);
}

// Start of the run of whitespace that ends at `end`.
size_t whitespace_run_start(std::string_view s, size_t end) {
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t p = start;
    if (!unicode::is_whitespace(unicode::next_code_point(s, p))) break;
    end = start;
  }
  return end;
}

size_t whitespace_run_end(std::string_view s, size_t begin) {
  while (begin < s.size()) {
    size_t p = begin;
    if (!unicode::is_whitespace(unicode::next_code_point(s, p))) break;
    begin = p;
  }
  return begin;
}

}  // namespace

void AddedVocabulary::add(const AddedToken& token) { tokens_.push_back(token); }

void AddedVocabulary::finish(const Normalizer* normalizer) {
  raw_patterns_.clear();
  normalized_patterns_.clear();
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;
    if (t.normalized)
      normalized_patterns_.push_back({normalizer ? normalizer->normalize(t.content) : t.content, i});
    else
      raw_patterns_.push_back({t.content, i});
  }
  auto longest_first = [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); };
  std::stable_sort(raw_patterns_.begin(), raw_patterns_.end(), longest_first);
  std::stable_sort(normalized_patterns_.begin(), normalized_patterns_.end(), longest_first);
}

const AddedToken* AddedVocabulary::find_by_id(int32_t id) const {
  for (const auto& t : tokens_)
    if (t.id == id) return &t;
  return nullptr;
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  for (const auto& t : tokens_)
    if (t.content == content) return &t;
  return nullptr;
}

void AddedVocabulary::split_pass(const std::string& text, const std::vector<Pattern>& patterns, bool parse_special,
                                 bool normalized, std::vector<Segment>& out) const {
  if (patterns.empty()) {
    if (!text.empty()) out.push_back({text, -1, normalized});
    return;
  }
  size_t emitted = 0;  // text before this has been emitted
  size_t pos = 0;
  while (pos < text.size()) {
    // Leftmost-longest match starting at pos.
    const Pattern* hit = nullptr;
    for (const auto& p : patterns)
      if (text.compare(pos, p.text.size(), p.text) == 0) {
        hit = &p;
        break;
      }
    if (!hit) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[hit->token];
    size_t start = pos, stop = pos + hit->text.size();
    pos = stop;  // like Aho-Corasick's find_iter, a rejected match is not retried shorter
    // Special tokens that may not be parsed stay part of the surrounding text (HF's encode_special_tokens).
    if (token.special && !parse_special) continue;
    if (token.single_word) {
      const bool starts_word = start == 0 || !unicode::is_alphanumeric(last_char(std::string_view(text).substr(0, start)));
      const bool ends_word = stop == text.size() || !unicode::is_alphanumeric(first_char(std::string_view(text).substr(stop)));
      if (!starts_word || !ends_word) continue;
    }
    if (token.lstrip) start = std::max(whitespace_run_start(text, start), emitted);
    if (token.rstrip) stop = whitespace_run_end(text, stop);
    pos = stop;
    if (start > emitted) out.push_back({text.substr(emitted, start - emitted), -1, normalized});
    out.push_back({text.substr(start, stop - start), token.id, normalized});
    emitted = stop;
  }
  if (emitted < text.size()) out.push_back({text.substr(emitted), -1, normalized});
}

std::vector<Segment> AddedVocabulary::split(const std::string& text, const Normalizer* normalizer, bool parse_special) const {
  std::vector<Segment> first, result;
  split_pass(text, raw_patterns_, parse_special, false, first);
  for (auto& segment : first) {
    if (segment.id >= 0) {
      result.push_back(std::move(segment));
      continue;
    }
    const std::string normalized = normalizer ? normalizer->normalize(segment.text) : segment.text;
    split_pass(normalized, normalized_patterns_, parse_special, true, result);
  }
  return result;
}

}  // namespace dsv2
