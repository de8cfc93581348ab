#include "tokenizer/normalizer.h"

#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using namespace json_fields;

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(unicode::Form form) : form_(form) {}
  std::string normalize(std::string_view text) const override { return unicode::normalize(text, form_); }

 private:
  unicode::Form form_;
};

class Lowercase : public Normalizer {
 public:
  std::string normalize(std::string_view text) const override { return unicode::lowercase(text); }
};

class Replace : public Normalizer {
 public:
  Replace(const nlohmann::json& j, const std::string& where) : content_(string_field(j, "content", where)) {
    auto [is_regex, pattern] = pattern_field(j, where);
    if (is_regex)
      regex_ = std::make_unique<Regex>(pattern, where + ".pattern");
    else
      literal_ = pattern;
  }
  std::string normalize(std::string_view text) const override {
    std::string out;
    size_t done = 0;
    if (regex_) {
      for (auto [b, e] : regex_->find_all(text)) {
        out.append(text.substr(done, b - done)).append(content_);
        done = e;
      }
    } else if (!literal_.empty()) {
      for (size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, done)) {
        out.append(text.substr(done, at - done)).append(content_);
        done = at + literal_.size();
      }
    }
    return out.append(text.substr(done));
  }

 private:
  std::string content_, literal_;
  std::unique_ptr<Regex> regex_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string_view text) const override {
    return text.empty() ? std::string() : prefix_ + std::string(text);  // HF prepends only to non-empty text
  }

 private:
  std::string prefix_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string_view text) const override {
    size_t begin = 0, end = text.size();
    if (left_)
      while (begin < end) {
        size_t p = begin;
        if (!unicode::is_whitespace(unicode::next_code_point(text, p))) break;
        begin = p;
      }
    if (right_)
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t p = start;
        if (!unicode::is_whitespace(unicode::next_code_point(text, p))) break;
        end = start;
      }
    return std::string(text.substr(begin, end - begin));
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string_view text) const override {
    std::string s(text);
    for (const auto& part : parts_) s = part->normalize(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "NFC") return std::make_unique<UnicodeForm>(unicode::Form::kNFC);
  if (type == "NFD") return std::make_unique<UnicodeForm>(unicode::Form::kNFD);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(unicode::Form::kNFKC);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(unicode::Form::kNFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Replace") return std::make_unique<Replace>(j, where);
  if (type == "Prepend") return std::make_unique<Prepend>(string_field(j, "prepend", where));
  if (type == "Strip") return std::make_unique<Strip>(bool_field(j, "strip_left", where, true), bool_field(j, "strip_right", where, true));
  if (type == "Sequence") {
    const auto& list = field(j, "normalizers", where);
    if (!list.is_array()) throw Error(where + ".normalizers: expected an array");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto part = make_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]");
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw Error(where + ": unsupported normalizer type '" + type + "'");
}

}  // namespace dsv2
