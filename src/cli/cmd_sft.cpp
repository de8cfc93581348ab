// dsv2 sft: supervised fine-tuning of a trained model on conversations
// (train/sft_data.h), through the same loop as dsv2 train (train/trainer.h):
// metrics.jsonl, progress line, checkpoints, exact resume. docs/ALIGNMENT.md.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "runtime/chat_template.h"
#include "train/sft_data.h"
#include "train/trainer.h"

namespace dsv2::cli {

int run_sft(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 sft -m BASE --data FILE.jsonl... --out DIR [--epochs N] [--lr X] [--seq-len N] [--batch-tokens N] "
            "[--validation FILE.jsonl...] [--resume]\n\n"
            "Fine-tunes BASE on conversations, one JSON object per line: {\"messages\": [{\"role\": \"user\", "
            "\"content\": \"...\"}, {\"role\": \"assistant\", \"content\": \"...\"}]}, rendered with BASE's chat "
            "template. Only the assistant's tokens are in the loss; conversations are packed several to a sequence, "
            "each attending only to itself.",
            {kModelOption,
             {"data", 'd', true, "FILE      conversations, JSON Lines (repeatable; more files may follow)"},
             {"out", 'o', true, "DIR       output: model, checkpoints, metrics.jsonl"},
             {"epochs", 0, true, "N         passes over the data (default 2, DeepSeek-V2's)"},
             {"lr", 0, true, "X         peak learning rate (default 2e-5)"},
             {"warmup", 0, true, "N         warm-up steps (default 3% of the steps)"},
             {"schedule", 0, true, "KIND      cosine (to 10%, default), constant or step"},
             {"seq-len", 0, true, "N         tokens per packed sequence, the longest conversation (default 1024, at most "
                                  "the model's max_position_embeddings)"},
             {"batch-tokens", 0, true, "N         tokens per step (default 8192: 8 sequences of 1024)"},
             {"seed", 0, true, "N         seed for the order of the conversations in each epoch (default 1)"},
             {"validation", 0, true, "FILE      held-out conversations (repeatable): their loss on the assistant tokens is "
                                     "logged as val_loss every --eval-every steps and at the end"},
             {"eval-every", 0, true, "N         steps between validations (default 100; with --validation)"},
             {"checkpoint-every", 0, true, "N         checkpoint every N steps (default 100)"},
             {"save-bf16", 0, false, "          write the final model.safetensors in bfloat16"},
             {"resume", 0, false, "          continue from the last checkpoint in --out (same command)"},
             kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string base = model_dir_option(args);
  std::vector<std::string> files = args.get_all("data");
  for (const auto& p : args.positional()) files.push_back(p);
  if (files.empty()) throw UsageError("no conversations: give --data FILE.jsonl...");
  TrainerOptions o;
  o.out_dir = args.require("out");
  o.init_from = base;
  o.tokenizer_dir = base;
  const int64_t epochs = args.get_int("epochs", 2);
  o.seq_len = args.get_int("seq-len", 1024);
  o.batch_tokens = args.get_int("batch-tokens", 8192);
  o.lr.peak = args.get_double("lr", 2e-5);
  o.lr.kind = args.get("schedule", "cosine");
  if (o.lr.kind != "step" && o.lr.kind != "cosine" && o.lr.kind != "constant") throw UsageError("option --schedule: cosine, constant or step");
  o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
  o.checkpoint_every = args.get_int("checkpoint-every", 100);
  o.save_bf16 = args.has("save-bf16");
  o.resume = args.has("resume");
  o.eval_every = 0;  // dsv2 train's held-out windows are text; SFT validates on --validation conversations
  if (epochs < 1) throw UsageError("option --epochs: must be at least 1");
  if (o.seq_len < 2 || o.batch_tokens < o.seq_len) throw UsageError("need --seq-len >= 2 and --batch-tokens >= --seq-len");
  if (!(o.lr.peak > 0)) throw UsageError("option --lr: must be positive");

  const Config config = load_config(base);
  if (o.seq_len > config.max_position_embeddings)
    throw UsageError("option --seq-len: " + std::to_string(o.seq_len) + " exceeds the model's max_position_embeddings (" +
                     std::to_string(config.max_position_embeddings) + ")");
  if (config.num_nextn_predict_layers > 0)  // their shifted sequences would cross the packed conversations
    throw Error(base + ": fine-tuning models with MTP modules (num_nextn_predict_layers > 0) is not supported yet");
  if (!Tokenizer::exists_in(base)) throw Error(base + ": no tokenizer.json in the model directory");
  const auto tokenizer = Tokenizer::load(base);
  const ChatRenderer render = make_chat_renderer(*tokenizer, base + "/tokenizer_config.json");
  // Every file is read and checked before anything is written to --out.
  const SftData data = load_sft_files(files, *tokenizer, render, o.seq_len);
  const int32_t pad = tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : std::max(0, tokenizer->eos_id());
  SftBatches batches(data.examples, o.seq_len, epochs, o.seed, pad);
  o.batches = &batches;
  // Held-out conversations, packed as the training rows are, evaluated whole.
  std::vector<Batch> validation;
  if (const std::vector<std::string> held_out = args.get_all("validation"); !held_out.empty()) {
    const SftData validation_data = load_sft_files(held_out, *tokenizer, render, o.seq_len);
    SftBatches rows(validation_data.examples, o.seq_len, 1, o.seed, pad);
    const int64_t per_batch = std::max<int64_t>(1, o.batch_tokens / o.seq_len);
    for (int64_t i = 0; i < rows.steps(per_batch); ++i) validation.push_back(rows.next(per_batch, o.seq_len));
    o.validation_batches = &validation;
    o.eval_every = args.get_int("eval-every", 100);
    if (o.eval_every < 1) throw UsageError("option --eval-every: must be at least 1");
  }
  o.steps = batches.steps(o.batch_tokens / o.seq_len);
  o.lr.warmup_steps = args.get_int("warmup", o.steps * 3 / 100);
  std::fprintf(stderr, "%zu conversations%s, %lld epochs: %lld sequences of %lld tokens (%.0f%% padding), %lld steps, "
               "%lld assistant tokens in the loss\n",
               data.examples.size(),
               data.truncated ? (" (" + std::to_string(data.truncated) + " cut to --seq-len)").c_str() : "",
               static_cast<long long>(epochs), static_cast<long long>(batches.rows()), static_cast<long long>(o.seq_len),
               100.0 * batches.padding_share(), static_cast<long long>(o.steps),
               static_cast<long long>(batches.trained_tokens()));
  train(config, TokenData{}, o);
  std::printf("fine-tuned model written to %s\n", o.out_dir.c_str());
  return 0;
}

}  // namespace dsv2::cli
