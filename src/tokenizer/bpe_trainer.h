// Byte-level BPE training, following Hugging Face's BpeTrainer step for step so
// that the same input and settings give the same vocabulary and merges:
//   ids: special tokens, then the 256 byte symbols in code-point order;
//   repeatedly merge the most frequent adjacent pair (ties: the smaller
//   (left id, right id) pair) until the vocabulary is full or no pair reaches
//   min_frequency.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv2 {

class PreTokenizer;

struct BpeTrainerOptions {
  int64_t vocab_size = 32000;
  uint64_t min_frequency = 2;
  std::vector<std::string> special_tokens;
};

struct TrainedBpe {
  std::vector<std::string> tokens;                           // id -> token (byte-level symbols)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
};

// Counts the pre-tokenized words of `text`, line by line with line endings kept
// (as HF reads training files). Words are raw bytes.
void count_words(const std::string& text, const PreTokenizer& pre_tokenizer,
                 std::unordered_map<std::string, uint64_t>& counts);

// `progress(done, total)` is called now and then while merging (may be empty).
TrainedBpe train_bpe(const std::unordered_map<std::string, uint64_t>& word_counts, const BpeTrainerOptions& options,
                     const std::function<void(int64_t, int64_t)>& progress = {});

// tokenizer.json / tokenizer_config.json for a trained model with DeepSeek-style
// special tokens (first = BOS, second = EOS, third = pad), BOS added by the template.
nlohmann::json trained_tokenizer_json(const TrainedBpe& bpe, const nlohmann::json& pre_tokenizer,
                                      const std::vector<std::string>& special_tokens);
nlohmann::json trained_tokenizer_config_json(const std::vector<std::string>& special_tokens);

// The special tokens dsv2 gives the tokenizers it trains.
const std::vector<std::string>& deepseek_special_tokens();

}  // namespace dsv2
