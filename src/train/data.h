// Training data: text files tokenized once (or a pre-tokenized binary), split
// into training and validation parts, and batches of random windows drawn by a
// seeded generator whose state is saved with every checkpoint.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "train/batch.h"

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

// Passkey-retrieval episodes, mixed into continued training for long context:
// a window of training text with "The secret number is NNNNN." inserted at a
// random depth, ending with the question "The secret number is" and the
// answer " NNNNN.". A model that never saw a number copied from far back (dsv2-mini: 0%
// on dsv2 niah at any length) learns the skill from them; the evaluation
// (dsv2 niah) then uses held-out text, new numbers, other lengths and depths.
struct PasskeyFormat {
  std::vector<int32_t> needle_prefix;  // "The secret number is"
  std::vector<int32_t> before_digits;  // " "
  std::vector<int32_t> needle_end;     // "."
  std::vector<int32_t> question;       // "\nThe secret number is"
  int32_t digits[10] = {};             // "0" .. "9", one token each
  static constexpr int kDigits = 5;    // of the secret number, the first not 0
  // The answer's tokens at the end of an episode: " NNNNN."
  int64_t answer_tokens() const { return static_cast<int64_t>(before_digits.size() + kDigits + needle_end.size()); }
  // Loss on the answer only (" NNNNN."): the other targets of
  // an episode are -1, as SFT masks prompts. The answer is 6 of hundreds of
  // targets; with the whole episode in the loss the copying skill gets ~1% of
  // the gradient and did not appear in 600 steps on dsv2-mini.
  bool answer_only_loss = false;
  // The token ids of those pieces; throws Error if a digit is not a single token.
  static PasskeyFormat from(const Tokenizer& tokenizer);
};

// Where the trainer's batches come from; its state is saved with every
// checkpoint so that a resumed run continues with the same batches.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next(int64_t sequences, int64_t seq_len) = 0;
  virtual std::string state() const = 0;
  virtual void set_state(const std::string& state) = 0;
};

// For sources that follow a fixed plan (SFT's packed rows, reward pairs): the
// state "<kind> <cursor> <fingerprint of the plan>", and its reading, which
// checks that it was written by `kind` over the same plan (else an Error
// naming `command` and the options that make the plan) and returns the cursor
// (at most `end`).
std::string plan_state(const std::string& kind, int64_t cursor, uint64_t fingerprint);
int64_t plan_cursor(const std::string& state, const std::string& kind, int64_t end, uint64_t fingerprint,
                    const std::string& command, const std::string& plan_options);

// Epoch `epoch`'s order of n examples: Fisher-Yates with mt19937_64's raw
// output (std::shuffle's draws are the library's own), the same on every platform.
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);

class BatchSampler : public BatchSource {
 public:
  // With `passkey` and passkey_share > 0, that share of the sequences are
  // passkey episodes (PasskeyFormat) instead of plain windows.
  BatchSampler(const TokenStream& stream, uint64_t seed, double never_drop_share, double passkey_share = 0.0,
               const PasskeyFormat* passkey = nullptr);
  // `sequences` random windows of seq_len + 1 tokens.
  Batch next(int64_t sequences, int64_t seq_len) override;
  std::string state() const override;  // the generator, for checkpoints
  void set_state(const std::string& state) override;

 private:
  // seq_len + 1 tokens: a window of text with a needle inside and the question and answer at the end.
  std::vector<int32_t> passkey_episode(int64_t seq_len);

  const TokenStream& stream_;
  std::mt19937_64 rng_;
  double never_drop_share_, passkey_share_;
  const PasskeyFormat* passkey_;
};

// Consecutive non-overlapping windows over the whole stream (evaluation).
std::vector<Batch> evaluation_batches(const TokenStream& stream, int64_t seq_len, int64_t sequences_per_batch,
                                      int64_t max_batches);

}  // namespace dsv2
