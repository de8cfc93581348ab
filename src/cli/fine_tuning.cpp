#include "cli/fine_tuning.h"

#include "core/error.h"

namespace dsv2::cli {

std::vector<OptionSpec> fine_tuning_options(const std::string& default_lr) {
  return {{"lr", 0, true, "X         peak learning rate (default " + default_lr + ")"},
          {"warmup", 0, true, "N         warm-up steps (default 3% of the steps)"},
          {"schedule", 0, true, "KIND      cosine (to 10%, default), constant or step"},
          {"checkpoint-every", 0, true, "N         checkpoint every N steps (default 100)"},
          {"save-bf16", 0, false, "          write the final model.safetensors in bfloat16"},
          {"resume", 0, false, "          continue from the last checkpoint in --out (same command)"}};
}

void read_fine_tuning_options(const Args& args, const std::string& base, double default_lr, TrainerOptions& o) {
  o.out_dir = args.require("out");
  o.init_from = base;
  o.tokenizer_dir = base;
  o.lr.peak = args.get_double("lr", default_lr);
  o.lr.kind = args.get("schedule", "cosine");
  if (o.lr.kind != "step" && o.lr.kind != "cosine" && o.lr.kind != "constant") throw UsageError("option --schedule: cosine, constant or step");
  if (!(o.lr.peak > 0)) throw UsageError("option --lr: must be positive");
  o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
  o.checkpoint_every = args.get_int("checkpoint-every", 100);
  o.save_bf16 = args.has("save-bf16");
  o.resume = args.has("resume");
  o.eval_every = 0;  // dsv2 train's held-out windows are text
}

void read_fine_tuning_warmup(const Args& args, TrainerOptions& o) {
  o.lr.warmup_steps = args.get_int("warmup", o.steps * 3 / 100);
}

std::vector<std::string> data_files(const Args& args, const std::string& what) {
  std::vector<std::string> files = args.get_all("data");
  for (const auto& p : args.positional()) files.push_back(p);
  if (files.empty()) throw UsageError("no " + what + ": give --data FILE.jsonl...");
  return files;
}

}  // namespace dsv2::cli
