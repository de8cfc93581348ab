// Training data: text files tokenized once (or a pre-tokenized binary), split
// into training and validation parts, and batches of random windows drawn by a
// seeded generator whose state is saved with every checkpoint.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "train/training_model.h"

namespace dsv2 {

class Tokenizer;

struct TokenStream {
  std::vector<int32_t> tokens;
  int64_t bytes = 0;  // UTF-8 bytes of the text these tokens encode (for bits per byte)
};

struct TokenData {
  TokenStream train, validation;
};

// Where a file's validation part begins: the first line boundary after the
// first (1 - validation_share) of its bytes (the end of the text for share 0).
size_t validation_cut(const std::string& text, double validation_share);

// Each file is split at a line boundary: its last `validation_share` of bytes
// go to validation. Every file starts with BOS (if the tokenizer has one).
TokenData tokenize_files(const std::vector<std::string>& files, const Tokenizer& tokenizer, double validation_share);

// A pre-tokenized binary (written by `dsv2 pretokenize`): magic, then both streams.
void save_token_data(const TokenData& data, const std::string& path);
TokenData load_token_data(const std::string& path);

class BatchSampler {
 public:
  BatchSampler(const TokenStream& stream, uint64_t seed, double never_drop_share);
  // `sequences` random windows of seq_len + 1 tokens.
  Batch next(int64_t sequences, int64_t seq_len);
  std::string state() const;  // the generator, for checkpoints
  void set_state(const std::string& state);

 private:
  const TokenStream& stream_;
  std::mt19937_64 rng_;
  double never_drop_share_;
};

// Consecutive non-overlapping windows over the whole stream (evaluation).
std::vector<Batch> evaluation_batches(const TokenStream& stream, int64_t seq_len, int64_t sequences_per_batch,
                                      int64_t max_batches);

}  // namespace dsv2
