// dsv2 eval --answers FILE.jsonl: accuracy on prompts with checkable answers
// (GRPO's prompt format, train/rl_prompts.h), scored by GRPO's rewards
// (train/rewards.h). The completions are greedy by default and decoded in
// batches with the rollout sampler (runtime/rollout.h); the results are
// reported per "kind" field of the lines (e.g. add, copy), as a chat model's
// card reports base -> SFT -> GRPO per task.
#include <cstdio>
#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "runtime/chat_template.h"
#include "runtime/rollout.h"
#include "train/rewards.h"

namespace dsv2::cli {

namespace {

struct Tally {
  int64_t items = 0;
  double reward = 0.0;   // summed
  int64_t perfect = 0;   // completions with the best reward, 1
};

void print_tally(const Args& args, const std::string& file, const std::string& kind, const Tally& t) {
  const double mean = t.items ? t.reward / t.items : 0.0, accuracy = t.items ? double(t.perfect) / t.items : 0.0;
  if (args.has("json"))
    std::printf("%s\n", nlohmann::json({{"file", file}, {"kind", kind}, {"items", t.items}, {"reward_mean", mean},
                                        {"accuracy", accuracy}}).dump().c_str());
  else
    std::printf("%-28s %-12s items %5lld  reward %.4f  accuracy %.4f\n", file.c_str(), kind.c_str(),
                static_cast<long long>(t.items), mean, accuracy);
}

}  // namespace

void eval_answers(const Args& args, Model& model, const Tokenizer& tokenizer, const std::string& model_dir) {
  RolloutOptions rollout;
  rollout.group = args.get_int("samples", 1);
  rollout.max_new_tokens = args.get_int("max-new-tokens", 64);
  rollout.sampling.temperature = static_cast<float>(args.get_double("temperature", 0.0));
  rollout.sampling.seed = static_cast<uint64_t>(args.get_int("seed", 1));
  const int64_t limit = args.get_int("limit", 0), per_batch = args.get_int("batch", 16);
  if (rollout.group < 1 || rollout.max_new_tokens < 1 || per_batch < 1 || limit < 0)
    throw UsageError("--samples, --max-new-tokens and --batch must be at least 1, --limit at least 0");
  if (!(rollout.sampling.temperature >= 0)) throw UsageError("option --temperature: must not be negative");
  if (rollout.group > 1 && rollout.sampling.temperature == 0)
    throw UsageError("option --samples: several samples per prompt need --temperature > 0");
  rollout.stop_ids = model.config().eos_token_ids;
  if (tokenizer.eos_id() >= 0) rollout.stop_ids.push_back(tokenizer.eos_id());
  std::unique_ptr<Reward> reward;
  try {
    reward = args.has("reward-cmd") ? make_command_reward(args.get("reward-cmd", ""))
                                    : make_builtin_reward(args.get("reward", "exact-answer"));
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  const ChatRenderer render = make_chat_renderer(tokenizer, model_dir + "/tokenizer_config.json");
  // Every file is read and checked before the first completion.
  std::vector<std::vector<RlPrompt>> files;
  for (const std::string& file : args.get_all("answers")) {
    files.push_back(load_rl_prompts(file, tokenizer, render, model.config().max_position_embeddings,
                                    rollout.max_new_tokens, reward->required_field()));
    if (limit > 0 && static_cast<int64_t>(files.back().size()) > limit) files.back().resize(static_cast<size_t>(limit));
  }
  const std::string completions_file = args.get("completions", "");
  std::string completions_log;
  Tally total;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& file = args.get_all("answers")[f];
    const std::vector<RlPrompt>& prompts = files[f];
    std::map<std::string, Tally> by_kind;
    for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(per_batch)) {
      const size_t end = std::min(prompts.size(), first + static_cast<size_t>(per_batch));
      std::vector<std::vector<int32_t>> tokens;
      std::vector<const RlPrompt*> batch;
      for (size_t p = first; p < end; ++p) tokens.push_back(prompts[p].tokens), batch.push_back(&prompts[p]);
      rollout.sampling.seed = static_cast<uint64_t>(args.get_int("seed", 1)) + first * rollout.group;
      const auto completions = sample_completions(model, tokens, rollout);
      const std::vector<RewardInput> inputs = reward_inputs(batch, completions, tokenizer);
      const std::vector<double> rewards = reward->score(inputs);
      for (size_t i = 0; i < inputs.size(); ++i) {
        const nlohmann::json& fields = inputs[i].prompt->fields;
        const std::string kind = fields.contains("kind") && fields["kind"].is_string() ? fields["kind"].get<std::string>() : "all";
        for (Tally* t : {&by_kind[kind], &total}) {
          t->items += 1;
          t->reward += rewards[i];
          t->perfect += rewards[i] >= 1.0;
        }
        if (!completions_file.empty()) {
          const std::vector<int32_t> completion(inputs[i].tokens.begin() + inputs[i].prompt->tokens.size(), inputs[i].tokens.end());
          nlohmann::ordered_json line = {{"where", inputs[i].prompt->where}, {"kind", kind}, {"prompt", inputs[i].prompt->text},
                                         {"completion", inputs[i].completion}, {"tokens", completion},
                                         {"stopped", inputs[i].stopped}, {"reward", rewards[i]}};
          if (fields.contains("answer")) line["answer"] = fields["answer"];
          completions_log += line.dump() + "\n";
        }
      }
    }
    for (const auto& [kind, tally] : by_kind) print_tally(args, file, kind, tally);
  }
  print_tally(args, "total", "all", total);
  if (!completions_file.empty()) write_file_atomically(completions_file, completions_log);
}

}  // namespace dsv2::cli
