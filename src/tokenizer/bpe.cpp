#include "tokenizer/bpe.h"

#include <queue>

#include "tokenizer/json_fields.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using namespace json_fields;

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

constexpr size_t kCacheLimit = 1 << 18;  // words
constexpr size_t kCacheWordBytes = 256;  // longer words are not cached

}  // namespace

Bpe::Bpe(const nlohmann::json& model, const std::string& where, bool byte_level) : byte_level_(byte_level) {
  const std::string type = model.is_object() && model.contains("type") ? string_field(model, "type", where) : "BPE";
  if (type != "BPE") throw Error(where + ".type: unsupported model type '" + type + "' (dsv2 reads BPE)");
  const auto& vocab = field(model, "vocab", where);
  if (!vocab.is_object()) throw Error(where + ".vocab: expected an object of token -> id");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX)
      throw Error(where + ".vocab['" + it.key() + "']: expected a non-negative integer id");
    add_token(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
  }
  ignore_merges_ = bool_field(model, "ignore_merges", where, false);
  byte_fallback_ = bool_field(model, "byte_fallback", where, false);
  if (model.contains("continuing_subword_prefix") && model["continuing_subword_prefix"].is_string())
    continuing_subword_prefix_ = model["continuing_subword_prefix"].get<std::string>();
  if (model.contains("end_of_word_suffix") && model["end_of_word_suffix"].is_string())
    end_of_word_suffix_ = model["end_of_word_suffix"].get<std::string>();
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    unk_id_ = token_to_id(model["unk_token"].get<std::string>());
    if (unk_id_ < 0) throw Error(where + ".unk_token: '" + model["unk_token"].get<std::string>() + "' is not in the vocabulary");
  }

  const auto& merges = field(model, "merges", where);
  if (!merges.is_array()) throw Error(where + ".merges: expected an array");
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    const std::string at = where + ".merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (m.is_string()) {  // "a b"
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) throw Error(at + ": expected \"left right\"");
      left = s.substr(0, space), right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      throw Error(at + ": expected \"left right\" or [left, right]");
    }
    const int32_t a = token_to_id(left), b = token_to_id(right);
    std::string merged = left + (continuing_subword_prefix_.empty() || right.rfind(continuing_subword_prefix_, 0) != 0
                                     ? right
                                     : right.substr(continuing_subword_prefix_.size()));
    const int32_t c = token_to_id(merged);
    if (a < 0 || b < 0) throw Error(at + ": '" + (a < 0 ? left : right) + "' is not in the vocabulary");
    if (c < 0) throw Error(at + ": merged token '" + merged + "' is not in the vocabulary");
    merges_.emplace(pair_key(a, b), std::make_pair(static_cast<int32_t>(rank), c));  // the first rank wins
  }

  if (byte_level_) {
    byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) byte_ids_[b] = token_to_id(unicode::byte_to_symbol()[b]);
  }
}

void Bpe::add_token(const std::string& token, int32_t id) {
  vocab_[token] = id;
  if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(id) + 1);
  tokens_[id] = token;
}

int32_t Bpe::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& Bpe::id_to_token(int32_t id) const {
  static const std::string empty;
  return id >= 0 && static_cast<size_t>(id) < tokens_.size() ? tokens_[id] : empty;
}

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.size() <= kCacheWordBytes) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  encode_uncached(word, ids);
  if (word.size() <= kCacheWordBytes) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheLimit) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + static_cast<ptrdiff_t>(first), ids.end()));
  }
}

void Bpe::encode_uncached(std::string_view word, std::vector<int32_t>& ids) const {
  // Initial symbols: one per byte (byte-level) or per character.
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  std::vector<Symbol> symbols;
  std::string symbol_text;
  if (byte_level_) {
    if (ignore_merges_) {
      std::string whole;
      for (unsigned char b : word) whole += unicode::byte_to_symbol()[b];
      if (int32_t id = token_to_id(whole); id >= 0) {
        ids.push_back(id);
        return;
      }
    }
    for (unsigned char b : word)
      if (byte_ids_[b] >= 0) symbols.push_back({byte_ids_[b], 0, 0});
  } else {
    if (ignore_merges_)
      if (int32_t id = token_to_id(word); id >= 0) {
        ids.push_back(id);
        return;
      }
    for (size_t pos = 0; pos < word.size();) {
      const size_t begin = pos;
      unicode::next_code_point(word, pos);
      symbol_text.assign(word.substr(begin, pos - begin));
      if (begin > 0) symbol_text.insert(0, continuing_subword_prefix_);
      if (pos == word.size()) symbol_text += end_of_word_suffix_;
      int32_t id = token_to_id(symbol_text);
      if (id < 0 && byte_fallback_) {
        for (size_t i = begin; i < pos; ++i) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "<0x%02X>", static_cast<unsigned char>(word[i]));
          if (int32_t byte_id = token_to_id(hex); byte_id >= 0) symbols.push_back({byte_id, 0, 0});
        }
        continue;
      }
      if (id < 0) id = unk_id_;
      if (id >= 0) symbols.push_back({id, 0, 0});  // without unk, HF drops unknown characters
    }
  }
  const int n = static_cast<int>(symbols.size());
  for (int i = 0; i < n; ++i) symbols[i].prev = i - 1, symbols[i].next = i + 1 < n ? i + 1 : -1;

  // Merge the lowest-ranked pair first; equal ranks go left to right.
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int pos) {
    const int next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, symbols[pos].id, symbols[next].id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0 || left.id != top.left || symbols[left.next].id != top.right) continue;  // stale
    Symbol& right = symbols[left.next];
    left.id = merges_.at(pair_key(top.left, top.right)).second;
    right.id = -1;  // removed
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int i = 0; i < n && i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace dsv2
