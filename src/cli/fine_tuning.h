// What dsv2 sft and dsv2 rm share: both run the trainer's loop (train/trainer.h)
// on a trained model, with the same optimizer, schedule and checkpoint options.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"
#include "train/trainer.h"

namespace dsv2::cli {

// --lr (help naming `default_lr`), --warmup, --schedule, --checkpoint-every, --save-bf16, --resume.
std::vector<OptionSpec> fine_tuning_options(const std::string& default_lr);

// The options above plus the model's: out_dir (--out), init_from and
// tokenizer_dir (`base`), --seed; eval_every 0 (each command sets its own).
// --warmup is read later (fine_tuning_warmup), once the steps are known.
void read_fine_tuning_options(const Args& args, const std::string& base, double default_lr, TrainerOptions& o);
// --warmup, default 3% of o.steps.
void read_fine_tuning_warmup(const Args& args, TrainerOptions& o);

// --data files and the positional ones after them; `what` names them in the error when there are none.
std::vector<std::string> data_files(const Args& args, const std::string& what);

}  // namespace dsv2::cli
