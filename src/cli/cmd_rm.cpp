// dsv2 rm: a reward model from a fine-tuned model (DeepSeek-V2 §4): the model
// plus a scalar head score.weight on the last token's final hidden state,
// every weight trained with the pair-wise loss −log σ(r_chosen − r_rejected)
// (or point-wise binary cross-entropy), through the same loop as dsv2 train:
// AdamW, schedule, metrics.jsonl, progress line, checkpoints, exact resume.
// train/reward_data.h, docs/ALIGNMENT.md.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/fine_tuning.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "runtime/chat_template.h"
#include "runtime/reward_model.h"
#include "train/reward_data.h"
#include "train/trainer.h"

namespace dsv2::cli {

int run_rm(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 rm -m SFT --data PAIRS.jsonl... --out DIR [--eval-data FILE.jsonl] [--epochs N] [--lr X] "
            "[--batch-size N] [--max-length N] [--resume]\n\n"
            "Trains a reward model from SFT: a scalar head (score.weight) on the last token's final hidden state, "
            "all weights trained. Lines {\"prompt\": P, \"chosen\": A, \"rejected\": B} train with the pair-wise "
            "loss -log sigmoid(r_chosen - r_rejected); lines {\"prompt\": P, \"completion\": A, \"label\": 0|1} with "
            "the point-wise binary cross-entropy of sigmoid(r). P is raw text or a list of chat messages (rendered "
            "with SFT's chat template). DIR is a model directory dsv2 rm-score (and transformers' "
            "...ForSequenceClassification) reads.",
            join_options({{kModelOption,
                           {"data", 'd', true, "FILE      training examples, JSON Lines (repeatable; more files may follow)"},
                           {"out", 'o', true, "DIR       output: reward model, checkpoints, metrics.jsonl"},
                           {"eval-data", 0, true, "FILE      held-out examples: their accuracy with the trained model at the end"},
                           {"epochs", 0, true, "N         passes over the data (default 1)"},
                           {"batch-size", 0, true, "N         pairs (or point-wise examples) per step (default 8)"},
                           {"max-length", 0, true, "N         tokens of prompt + answer at most (default 1024; longer: an error)"},
                           {"seed", 0, true, "N         seed for the examples' order and the head's initial values (default 1)"}},
                          fine_tuning_options("1e-5"),
                          {kThreadsOption}}));
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string base = model_dir_option(args);
  const std::vector<std::string> files = data_files(args, "examples");
  TrainerOptions o;
  read_fine_tuning_options(args, base, 1e-5, o);  // eval_every 0: --eval-data is scored at the end
  const int64_t epochs = args.get_int("epochs", 1);
  const int64_t batch_size = args.get_int("batch-size", 8);
  const int64_t max_length = args.get_int("max-length", 1024);
  if (epochs < 1) throw UsageError("option --epochs: must be at least 1");
  if (batch_size < 1) throw UsageError("option --batch-size: must be at least 1");
  if (max_length < 2) throw UsageError("option --max-length: must be at least 2");

  Config config = load_config(base);
  if (max_length > config.max_position_embeddings)
    throw UsageError("option --max-length: " + std::to_string(max_length) + " exceeds the model's max_position_embeddings (" +
                     std::to_string(config.max_position_embeddings) + ")");
  if (config.num_nextn_predict_layers > 0)  // they would train on nothing (the objective never reads them)
    throw Error(base + ": reward models from models with MTP modules (num_nextn_predict_layers > 0) are not supported");
  config.num_labels = 1;  // the output: ...ForSequenceClassification with score.weight [1, hidden_size]
  if (!Tokenizer::exists_in(base)) throw Error(base + ": no tokenizer.json in the model directory");
  const auto tokenizer = Tokenizer::load(base);
  const ChatRenderer render = make_chat_renderer(*tokenizer, base + "/tokenizer_config.json");
  // Every file is read and checked before anything is written to --out.
  const RewardData data = load_reward_files(files, *tokenizer, render, max_length);
  const std::string eval_file = args.get("eval-data", "");
  std::optional<RewardData> eval;
  if (!eval_file.empty()) {
    eval = load_reward_files({eval_file}, *tokenizer, render, max_length);
    if (eval->pairwise != data.pairwise) throw Error(eval_file + ": not the training data's kind (pair-wise / point-wise)");
  }
  const int32_t pad = tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : std::max(0, tokenizer->eos_id());
  RewardBatches batches(data, epochs, o.seed, pad);
  RewardObjective objective(data.pairwise);
  o.batches = &batches;
  o.objective = &objective;
  // Rows are as long as each step's longest example (RewardBatches); seq_len
  // and batch_tokens only tell the trainer how many rows a step takes.
  o.seq_len = max_length;
  o.batch_tokens = batch_size * max_length;
  o.steps = batches.steps(batch_size);
  read_fine_tuning_warmup(args, o);
  std::fprintf(stderr, "%zu %s, %lld epochs, %lld per step: %lld steps\n", data.examples.size(),
               data.pairwise ? "pairs (pair-wise loss)" : "completions (point-wise loss)", static_cast<long long>(epochs),
               static_cast<long long>(batch_size), static_cast<long long>(o.steps));
  train(config, TokenData{}, o);
  std::printf("reward model written to %s\n", o.out_dir.c_str());

  if (eval) {  // through the inference model: what dsv2 rm-score and GRPO will see
    RewardModel rm(o.out_dir);
    const RewardAccuracy a = reward_accuracy(rm, *eval);
    const nlohmann::ordered_json result = {{"file", eval_file}, {data.pairwise ? "pairs" : "items", a.items},
                                           {"accuracy", a.accuracy}, {data.pairwise ? "margin" : "mean_score", a.margin}};
    write_file_atomically((std::filesystem::path(o.out_dir) / "eval.json").string(), result.dump() + "\n");
    std::printf("held-out %s: accuracy %.4f over %lld %s\n", eval_file.c_str(), a.accuracy, static_cast<long long>(a.items),
                data.pairwise ? "pairs" : "completions");
  }
  return 0;
}

}  // namespace dsv2::cli
