// Supervised fine-tuning data (DeepSeek-V2 §4): conversations in the chat
// format OpenAI and TRL use, one JSON object per line,
//   {"messages": [{"role": "system"|"user"|"assistant"|..., "content": "..."}, ...]}
// rendered with the model's own chat template and tokenized; only the
// assistant's tokens are targets. Conversations are packed several to a
// sequence, each with its own RoPE positions from 0, which also confines
// attention to it (Batch::positions, mla_train.h). docs/ALIGNMENT.md.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "runtime/chat_format.h"
#include "runtime/chat_template.h"
#include "train/data.h"

namespace dsv2 {

class Tokenizer;

// One conversation as training tokens.
struct SftExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> trained;  // per token: 1 for the assistant's (a target of the loss)
};

// A JSON list of {"role": "...", "content": "..."} messages (string role and
// content); throws Error naming the message at fault (no file position).
std::vector<ChatMessage> parse_message_list(const nlohmann::json& list);

// Renders and tokenizes one conversation. The assistant's tokens are found by
// rendering incrementally: the template's text for the turns before an
// assistant turn plus the generation prompt (what the model is given at
// inference) must be a prefix of the text through that turn, and that of the
// whole conversation; what lies between is the assistant's (its content and
// whatever the template closes a turn with, e.g. EOS, so the model learns to
// stop). Each piece is tokenized on its own with special tokens recognised and
// no BOS added (the template writes it), as `dsv2 chat` tokenizes a prompt.
// The text after the last assistant turn is left out (nothing to learn).
// Throws Error (no file position) for a conversation that cannot be used.
SftExample tokenize_conversation(const std::vector<ChatMessage>& messages, const Tokenizer& tokenizer,
                                 const ChatRenderer& render);

// The "messages" list of a JSONL line's object, each message with string
// "role" and "content"; throws Error (without the position, which the caller adds).
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& line);

struct SftData {
  std::vector<SftExample> examples;
  int64_t truncated = 0;  // conversations longer than seq_len, cut to it
};

// Reads JSONL files (empty lines skipped). Every problem is an Error naming
// the file and line: not JSON, not an object, no "messages" list, a message
// without string role and content, no assistant turn, a prompt (the tokens
// before the first assistant token) that fills the whole seq_len. A longer
// conversation whose first answer starts inside seq_len is cut to seq_len (as
// TRL's max_length truncates).
SftData load_sft_files(const std::vector<std::string>& files, const Tokenizer& tokenizer, const ChatRenderer& render,
                       int64_t seq_len);

// The whole run's sequences: for each epoch the conversations in a seeded
// order, packed in that order into rows of seq_len tokens (a conversation that
// does not fit in what is left of a row starts the next; the rest is padding,
// never a target). Steps take the rows in order, so the state is one counter.
class SftBatches : public BatchSource {
 public:
  SftBatches(const std::vector<SftExample>& examples, int64_t seq_len, int64_t epochs, uint64_t seed, int32_t pad_id);
  int64_t rows() const { return rows_; }
  int64_t steps(int64_t rows_per_step) const { return (rows_ + rows_per_step - 1) / rows_per_step; }
  int64_t trained_tokens() const;  // targets over the whole run
  double padding_share() const;    // of all the rows' tokens
  uint64_t fingerprint() const { return fingerprint_; }  // of the whole plan (data, epochs, seed, seq_len)

  // The next `sequences` rows (fewer at the end of the run).
  Batch next(int64_t sequences, int64_t seq_len) override;
  // The next row and a fingerprint of the whole plan: resuming with other
  // data, epochs, seed or seq_len is an error instead of a silent mix.
  std::string state() const override;
  void set_state(const std::string& state) override;

 private:
  int64_t seq_len_, rows_ = 0, cursor_ = 0, padding_ = 0;
  std::vector<int32_t> inputs_, targets_, positions_;  // [rows, seq_len] each
  uint64_t fingerprint_ = 0;
};

}  // namespace dsv2
