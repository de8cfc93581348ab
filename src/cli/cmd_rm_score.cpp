// dsv2 rm-score: a reward model's scores (runtime/reward_model.h) for JSONL
// examples, one JSON object per line on stdout and the accuracy on stderr.
// docs/ALIGNMENT.md.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/reward_model.h"
#include "train/reward_data.h"

namespace dsv2::cli {

int run_rm_score(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 rm-score -m RM --data FILE.jsonl\n\n"
            "Scores every line of FILE with the reward model RM (dsv2 rm's output): {\"prompt\", \"chosen\", "
            "\"rejected\"} lines print both scores and whether chosen wins, {\"prompt\", \"completion\"[, \"label\"]} "
            "lines their score; one JSON object per line on stdout, the accuracy on stderr. Every line is checked "
            "before the first is scored.",
            {kModelOption, {"data", 'd', true, "FILE      examples, JSON Lines"},
             {"ids", 0, false, "          also print the token ids each score was read from (chosen_ids, rejected_ids, ids)"},
             kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string dir = model_dir_option(args);
  std::string file = args.get("data", "");
  if (file.empty() && !args.positional().empty()) file = args.positional().front();
  if (file.empty()) throw UsageError("no examples: give --data FILE.jsonl");
  const bool ids = args.has("ids");
  RewardModel rm(dir);
  const RewardData data = load_reward_files({file}, rm.tokenizer(), rm.renderer(), rm.model().config().max_position_embeddings,
                                            /*require_label=*/false);
  const RewardAccuracy a = reward_accuracy(rm, data, [&](size_t i, const ExampleScores& s) {
    const RewardExample& e = data.examples[i];
    nlohmann::ordered_json line = {{"line", e.line}};
    if (e.pairwise) {
      line["chosen"] = s.chosen;
      line["rejected"] = s.rejected;
      line["chosen_wins"] = s.chosen > s.rejected;
      if (ids) line["chosen_ids"] = e.chosen.tokens, line["rejected_ids"] = e.rejected.tokens;
    } else {
      line["score"] = s.chosen;
      if (e.label >= 0) line["label"] = e.label;
      if (ids) line["ids"] = e.chosen.tokens;
    }
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  });
  if (data.pairwise)
    std::fprintf(stderr, "%lld pairs: accuracy %.4f (chosen scored higher), mean margin %.4f\n",
                 static_cast<long long>(a.items), a.accuracy, a.margin);
  else if (a.items > 0)
    std::fprintf(stderr, "%zu completions, %lld labelled: accuracy %.4f (score > 0 = label 1), mean score %.4f\n",
                 data.examples.size(), static_cast<long long>(a.items), a.accuracy, a.margin);
  else
    std::fprintf(stderr, "%zu completions: mean score %.4f\n", data.examples.size(), a.margin);
  return 0;
}

}  // namespace dsv2::cli
