// dsv2 eval --task FILE.jsonl: multiple-choice accuracy as lm-evaluation-harness
// computes it (runtime/multiple_choice.h), without a server.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/multiple_choice.h"

namespace dsv2::cli {

void eval_tasks(const Args& args, Model& model, const Tokenizer& tokenizer, CacheType cache_type) {
  const long long limit = args.get_int("limit", 0);
  if (limit < 0) throw UsageError("option --limit: must not be negative");
  // Every file is read before the first is scored: a bad line fails at once.
  std::vector<std::vector<ChoiceItem>> tasks;
  for (const std::string& file : args.get_all("task")) {
    tasks.push_back(load_choice_task(file));
    if (limit > 0 && static_cast<long long>(tasks.back().size()) > limit)
      tasks.back().resize(static_cast<size_t>(limit));
  }
  for (size_t t = 0; t < tasks.size(); ++t) {
    const std::string& file = args.get_all("task")[t];
    int64_t correct = 0, correct_norm = 0;
    for (const ChoiceItem& item : tasks[t]) {
      const ItemScore score = score_item(model, tokenizer, item, cache_type);
      correct += score.pred == item.answer;
      correct_norm += score.pred_norm == item.answer;
    }
    const auto n = static_cast<int64_t>(tasks[t].size());
    const Accuracy acc = accuracy(correct, n), norm = accuracy(correct_norm, n);
    if (args.has("json")) {
      const nlohmann::json j = {{"task", file},
                                {"items", n},
                                {"acc", acc.value},
                                {"acc_stderr", acc.stderr_},
                                {"acc_ci95", {acc.low, acc.high}},
                                {"acc_norm", norm.value},
                                {"acc_norm_stderr", norm.stderr_},
                                {"acc_norm_ci95", {norm.low, norm.high}}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-40s items %5lld  acc %.4f ± %.4f (95%% %.3f-%.3f)  acc_norm %.4f ± %.4f (95%% %.3f-%.3f)\n",
                  file.c_str(), static_cast<long long>(n), acc.value, acc.stderr_, acc.low, acc.high, norm.value,
                  norm.stderr_, norm.low, norm.high);
    }
    std::fflush(stdout);
  }
}

}  // namespace dsv2::cli
