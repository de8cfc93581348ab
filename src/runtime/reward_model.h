// A trained reward model at inference (dsv2 rm's output, docs/ALIGNMENT.md):
// the score of a token sequence is score.weight · h, h the final hidden state
// (after model.norm) of its last token — what transformers'
// DeepseekV2ForSequenceClassification computes for an unpadded sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/reward_data.h"
#include "train/rewards.h"

namespace dsv2 {

class RewardModel {
 public:
  // Loads DIR (config.json naming a ...ForSequenceClassification with
  // num_labels 1, model.safetensors with score.weight, and tokenizer.json,
  // which only tokenizer() and renderer() need). Throws Error when DIR is not
  // a reward model.
  explicit RewardModel(const std::string& dir);

  // The score of one sequence (prompt and answer tokens, as reward_sequence in
  // train/reward_data.h makes them). Not thread-safe.
  float score(const std::vector<int32_t>& ids);

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const;  // throws Error when DIR has none
  // The chat template the model was trained with (tokenizer_config.json).
  const ChatRenderer& renderer() const { return render_; }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatRenderer render_;
  std::vector<float> head_;  // score.weight's row
  std::vector<float> logits_, hidden_;
};

// The scores of one example (point-wise: `chosen` is the completion's).
struct ExampleScores {
  float chosen = 0.0f, rejected = 0.0f;
};

struct RewardAccuracy {
  int64_t items = 0;      // pairs, or labelled completions
  double accuracy = 0.0;  // share of pairs with r_chosen > r_rejected, or of labelled completions with (r > 0) == label
  double margin = 0.0;    // mean r_chosen − r_rejected, or mean r over all completions
};

// Scores every example of `data` (in order, calling each(index, scores) when
// given) and sums up, as the training metrics do.
RewardAccuracy reward_accuracy(RewardModel& model, const RewardData& data,
                               const std::function<void(size_t, const ExampleScores&)>& each = {});

// GRPO's reward from a reward model (dsv2 grpo --reward-model DIR): each
// completion's score is the model's score of its prompt ++ completion tokens,
// which the policy and the reward model read alike when both come from the
// same SFT model (same tokenizer and chat template).
std::unique_ptr<Reward> make_model_reward(const std::string& dir);

}  // namespace dsv2
