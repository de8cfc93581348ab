// Reward-model data and objective (DeepSeek-V2 §4: reward models start from the
// SFT model, trained with a pair-wise or a point-wise loss). docs/ALIGNMENT.md.
//
// JSON Lines, one example per line, in TRL's formats:
//   pair-wise   {"prompt": P, "chosen": A, "rejected": B}
//   point-wise  {"prompt": P, "completion": A, "label": 0 | 1}
// P is a string (raw text: the answer follows it as is, the tokenizer's BOS
// first) or a list of chat messages (rendered with the model's chat template
// and generation prompt, the answer being the assistant turn's content, closed
// as the template closes a turn). A or B may also be a list holding one
// assistant message (TRL's conversational form).
//
// The score of a sequence is score.weight · h, h the final hidden state (after
// model.norm) of its last token. Loss: pair-wise −log σ(r_chosen − r_rejected),
// point-wise the binary cross-entropy of σ(r) against the label; both the mean
// over the step's pairs (items).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/chat_template.h"
#include "train/batch.h"
#include "train/data.h"
#include "train/trainer.h"

namespace dsv2 {

class Tokenizer;

// The token sequence of one prompt + answer, and how many of its tokens are the prompt's.
struct RewardSequence {
  std::vector<int32_t> tokens;
  int64_t prompt_tokens = 0;
};

// prompt (a string or a list of messages) followed by answer (a string or a
// list of one assistant message). Throws Error (no file position) when either
// is malformed; `field` names the answer in it.
RewardSequence reward_sequence(const nlohmann::json& prompt, const nlohmann::json& answer, const Tokenizer& tokenizer,
                               const ChatRenderer& render, const char* field = "answer");

struct RewardExample {
  bool pairwise = true;
  RewardSequence chosen;    // point-wise: the completion
  RewardSequence rejected;  // point-wise: empty
  int label = -1;           // point-wise: 0 or 1 (-1: none, only when not required)
  int64_t line = 0;         // its line in its file (load_reward_files)
};

struct RewardData {
  std::vector<RewardExample> examples;
  bool pairwise = true;
};

// One line: pair-wise or point-wise by its fields. Throws Error naming what is
// wrong (not JSON, not an object, a missing or mistyped field). Without
// require_label a point-wise line may lack "label" (dsv2 rm-score).
RewardExample parse_reward_line(const std::string& line, const Tokenizer& tokenizer, const ChatRenderer& render,
                                bool require_label = true);

// Reads JSONL files (empty lines skipped); every line of every file is checked
// before anything is trained. Each problem is an Error naming the file and
// line: the ones of parse_reward_line, a line of the other kind than the
// first one (pair-wise and point-wise do not mix), a sequence longer than
// max_length tokens (its score would be read at a token the answer does not
// end with), with the prompt alone longer called out as such.
RewardData load_reward_files(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const ChatRenderer& render, int64_t max_length, bool require_label = true);

// The run's batches: every epoch the examples in a seeded order; a step takes
// `sequences` examples, one row each (a pair: chosen then rejected, each with
// its RoPE positions from 0, which confines attention to it, Batch::positions),
// rows as long as the step's longest, padded. Batch::targets marks where a
// score is read: at the last token of a pair's chosen 1 and of its rejected 0;
// point-wise the label at the completion's last token; -1 elsewhere.
class RewardBatches : public BatchSource {
 public:
  RewardBatches(const RewardData& data, int64_t epochs, uint64_t seed, int32_t pad_id);
  int64_t steps(int64_t rows_per_step) const;
  Batch next(int64_t sequences, int64_t seq_len) override;  // seq_len: ignored (rows fit the step's examples)
  // The next example and a fingerprint of the plan (other data or options: an error).
  std::string state() const override;
  void set_state(const std::string& state) override;

 private:
  const RewardData& data_;
  int32_t pad_;
  std::vector<size_t> order_;  // every epoch's order, concatenated
  size_t cursor_ = 0;
  uint64_t fingerprint_ = 0;
};

// One row of a batch (what rm-score and the tests run alone): the example's
// sequences packed as RewardBatches packs them.
Batch reward_batch(const std::vector<const RewardExample*>& examples, int32_t pad_id);

struct RewardMetrics {
  int64_t items = 0;      // pairs (pair-wise) or completions (point-wise)
  double loss = 0.0;      // the mean
  double accuracy = 0.0;  // share of pairs with r_chosen > r_rejected, or of items with (r > 0) == label
  double margin = 0.0;    // mean r_chosen − r_rejected (pair-wise), mean r (point-wise)
};

// The loss of the scores read from h [rows, d] (final hidden states) at the
// marked tokens of `batch`. With d_h (zeroed, h's size): d loss / d h there,
// and d loss / d score.weight added into g_score.
RewardMetrics reward_head(const float* h, const Batch& batch, int64_t d, const float* score, bool pairwise,
                          float* d_h, float* g_score);

// The trainer's step for a reward model (TrainerOptions::objective): the
// scores' loss through TrainingModel::run_hidden; logs accuracy and margin.
class RewardObjective : public StepObjective {
 public:
  explicit RewardObjective(bool pairwise) : pairwise_(pairwise) {}
  StepResult step(TrainingModel& model, TrainWeights& weights, const Batch& batch) override;
  void add_metrics(nlohmann::ordered_json& line) const override;

 private:
  bool pairwise_;
  RewardMetrics last_;
};

}  // namespace dsv2
