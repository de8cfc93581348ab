#include "tokenizer/decoder.h"

#include <cstdio>

#include "tokenizer/json_fields.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using namespace json_fields;

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    // HF joins all bytes first and decodes once; callers validate UTF-8 at the end.
    std::string bytes;
    for (const auto& token : tokens) {
      std::string mapped;
      bool all_symbols = true;
      for (size_t pos = 0; pos < token.size() && all_symbols;) {
        const int b = unicode::symbol_to_byte(unicode::next_code_point(token, pos));
        if (b < 0)
          all_symbols = false;
        else
          mapped += static_cast<char>(b);
      }
      bytes += all_symbols ? mapped : token;
    }
    tokens.assign(1, std::move(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const nlohmann::json& j, const std::string& where) : content_(string_field(j, "content", where)) {
    auto [is_regex, pattern] = pattern_field(j, where);
    if (is_regex) throw Error(where + ".pattern: dsv2 supports only String patterns in the Replace decoder");
    pattern_ = pattern;
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (pattern_.empty()) return;
    for (auto& t : tokens) {
      std::string out;
      size_t done = 0;
      for (size_t at = t.find(pattern_); at != std::string::npos; at = t.find(pattern_, done)) {
        out.append(t, done, at - done).append(content_);
        done = at + pattern_.size();
      }
      t = out.append(t, done, std::string::npos);
    }
  }

 private:
  std::string pattern_, content_;
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      for (size_t i = 0; i < start_ && t.rfind(content_, 0) == 0 && !content_.empty(); ++i) t.erase(0, content_.size());
      for (size_t i = 0; i < stop_ && !content_.empty() && t.size() >= content_.size() &&
                         t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i)
        t.erase(t.size() - content_.size());
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    // "<0xAB>" tokens become their byte; runs of them are joined before UTF-8 checks.
    std::vector<std::string> out;
    std::string pending;
    for (const auto& t : tokens) {
      unsigned value = 0;
      if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' && std::sscanf(t.c_str() + 3, "%2x", &value) == 1) {
        pending += static_cast<char>(value);
        continue;
      }
      if (!pending.empty()) out.push_back(unicode::to_valid_utf8(pending)), pending.clear();
      out.push_back(t);
    }
    if (!pending.empty()) out.push_back(unicode::to_valid_utf8(pending));
    tokens.swap(out);
  }
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(j, where);
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Strip") {
    const auto& start = field(j, "start", where);
    const auto& stop = field(j, "stop", where);
    if (!start.is_number_unsigned() || !stop.is_number_unsigned()) throw Error(where + ": start/stop must be non-negative integers");
    return std::make_unique<StripDecoder>(string_field(j, "content", where), start.get<size_t>(), stop.get<size_t>());
  }
  if (type == "Sequence") {
    const auto& list = field(j, "decoders", where);
    if (!list.is_array()) throw Error(where + ".decoders: expected an array");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list.size(); ++i)
      if (auto d = make_decoder(list[i], where + ".decoders[" + std::to_string(i) + "]")) parts.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  throw Error(where + ": unsupported decoder type '" + type + "'");
}

}  // namespace dsv2
