// The BPE model of tokenizer.json: a vocabulary and ranked merges. A word is
// split into symbols (its bytes in the byte-level alphabet, or its characters),
// then the adjacent pair with the lowest merge rank is merged, repeatedly,
// leftmost first on equal ranks, exactly as Hugging Face tokenizers does.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv2 {

class Bpe {
 public:
  Bpe(const nlohmann::json& model, const std::string& where, bool byte_level);

  // Appends the ids of one pre-tokenized word (raw bytes when byte_level).
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  const std::string& id_to_token(int32_t id) const;   // "" if absent
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  // Largest id + 1 over the vocabulary (ids may have gaps).
  int64_t id_limit() const { return static_cast<int64_t>(tokens_.size()); }
  bool byte_level() const { return byte_level_; }
  void add_token(const std::string& token, int32_t id);  // for added tokens outside the model vocab

 private:
  void encode_uncached(std::string_view word, std::vector<int32_t>& ids) const;

  bool byte_level_;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // id -> token
  std::vector<int32_t> byte_ids_;    // byte -> id of its byte-level symbol (-1 if missing)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left, right) -> (rank, merged id)

  // Results for recent words: natural text repeats its words a lot.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace dsv2
