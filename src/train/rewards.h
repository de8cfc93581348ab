// GRPO's rewards (dsv2 grpo --reward / --reward-cmd): one number per
// completion. docs/ALIGNMENT.md defines each.
//   exact-answer  1 when the completion's answer equals the prompt line's "answer"
//                 field, else 0. The answer is the text after the last "Answer:"
//                 (or "答案：" / "答案:") up to the end of its line, or else the last
//                 number in the completion; numbers compare as numbers.
//   format        0.5 for ending with EOS (not cut at --max-new-tokens) plus 0.5
//                 for an "Answer: X" (or "答案：X") line with X not empty.
//   --reward-cmd  an external command, run through /bin/sh: one JSON object per
//                 completion on its stdin ({"prompt", "completion" and the prompt
//                 line's other fields}), one number per line on its stdout.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/rollout.h"
#include "train/rl_prompts.h"

namespace dsv2 {

struct RewardInput {
  const RlPrompt* prompt;
  std::string completion;        // decoded, special tokens (EOS) left out
  bool stopped = false;          // ended with EOS
  std::vector<int32_t> tokens;   // prompt ++ completion (what a reward model reads)
};

// The rewards' inputs for completions[p][i] of prompts[p], in that order:
// each completion decoded without special tokens, its tokens after the prompt's.
std::vector<RewardInput> reward_inputs(const std::vector<const RlPrompt*>& prompts,
                                       const std::vector<std::vector<Completion>>& completions, const Tokenizer& tokenizer);

class Reward {
 public:
  virtual ~Reward() = default;
  // One reward per input; throws Error naming the reward (the command) at fault.
  virtual std::vector<double> score(const std::vector<RewardInput>& inputs) = 0;
  // A field every prompt line must have ("" for none).
  virtual std::string required_field() const { return ""; }
};

// "exact-answer" or "format"; throws Error for another name.
std::unique_ptr<Reward> make_builtin_reward(const std::string& name);
std::unique_ptr<Reward> make_command_reward(const std::string& command);

// The completion's answer as exact-answer reads it, or nothing.
std::optional<std::string> extract_answer(const std::string& completion);
// Whether an extracted answer equals the expected one (a JSON string or number).
bool answers_match(const std::string& answer, const nlohmann::json& expected);

}  // namespace dsv2
