// dsv2 sft: supervised fine-tuning of a trained model on conversations
// (train/sft_data.h), through the same loop as dsv2 train (train/trainer.h):
// metrics.jsonl, progress line, checkpoints, exact resume. docs/ALIGNMENT.md.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "cli/commands.h"
#include "cli/fine_tuning.h"
#include "core/error.h"
#include "dist/parallel_layout.h"
#include "dist/runtime.h"
#include "io/checkpoint.h"
#include "runtime/chat_template.h"
#include "train/sft_data.h"
#include "train/trainer.h"

namespace dsv2::cli {

namespace {

// What every rank needs before training: the options and the packed
// conversations the batches (and validation) are drawn from.
struct SftSetup {
  Config config;
  TrainerOptions options;
  std::unique_ptr<SftBatches> batches;
  std::vector<Batch> validation;
  int expert_parallel = 1;
  std::string summary;  // the data's one-line description
};

std::unique_ptr<SftSetup> parse_sft_setup(const Args& args, int ranks) {
  auto setup = std::make_unique<SftSetup>();
  TrainerOptions& o = setup->options;
  const std::string base = model_dir_option(args);
  const std::vector<std::string> files = data_files(args, "conversations");
  read_fine_tuning_options(args, base, 2e-5, o);  // eval_every 0: SFT validates on --validation conversations
  const int64_t epochs = args.get_int("epochs", 2);
  o.seq_len = args.get_int("seq-len", 1024);
  o.batch_tokens = args.get_int("batch-tokens", 8192);
  if (epochs < 1) throw UsageError("option --epochs: must be at least 1");
  if (o.seq_len < 2 || o.batch_tokens < o.seq_len) throw UsageError("need --seq-len >= 2 and --batch-tokens >= --seq-len");

  setup->config = load_config(base);
  const Config& config = setup->config;
  if (o.seq_len > config.max_position_embeddings)
    throw UsageError("option --seq-len: " + std::to_string(o.seq_len) + " exceeds the model's max_position_embeddings (" +
                     std::to_string(config.max_position_embeddings) + ")");
  setup->expert_parallel = static_cast<int>(args.get_int("expert-parallel", 1));
  if (const std::string problem = dist::ParallelLayout::check(ranks, setup->expert_parallel, config.n_routed_experts);
      !problem.empty())
    throw UsageError(problem + (ranks == 1 && setup->expert_parallel > 1 ? " (start dsv2 under mpirun -np N)" : ""));
  o.moe.devices = setup->expert_parallel;  // no device limit and no balance losses: the devices only place experts
  if (config.num_nextn_predict_layers > 0)  // their shifted sequences would cross the packed conversations
    throw Error(base + ": fine-tuning models with MTP modules (num_nextn_predict_layers > 0) is not supported yet");
  if (!Tokenizer::exists_in(base)) throw Error(base + ": no tokenizer.json in the model directory");
  const auto tokenizer = Tokenizer::load(base);
  const ChatRenderer render = make_chat_renderer(*tokenizer, base + "/tokenizer_config.json");
  const SftData data = load_sft_files(files, *tokenizer, render, o.seq_len);
  const int32_t pad = tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : std::max(0, tokenizer->eos_id());
  setup->batches = std::make_unique<SftBatches>(data.examples, o.seq_len, epochs, o.seed, pad);
  const SftBatches& batches = *setup->batches;
  o.batches = setup->batches.get();
  // Held-out conversations, packed as the training rows are, evaluated whole.
  if (const std::vector<std::string> held_out = args.get_all("validation"); !held_out.empty()) {
    const SftData validation_data = load_sft_files(held_out, *tokenizer, render, o.seq_len);
    SftBatches rows(validation_data.examples, o.seq_len, 1, o.seed, pad);
    const int64_t per_batch = std::max<int64_t>(1, o.batch_tokens / o.seq_len);
    for (int64_t i = 0; i < rows.steps(per_batch); ++i) setup->validation.push_back(rows.next(per_batch, o.seq_len));
    o.validation_batches = &setup->validation;
    o.eval_every = args.get_int("eval-every", 100);
    if (o.eval_every < 1) throw UsageError("option --eval-every: must be at least 1");
  }
  o.steps = batches.steps(o.batch_tokens / o.seq_len);
  read_fine_tuning_warmup(args, o);
  char line[512];
  std::snprintf(line, sizeof line, "%zu conversations%s, %lld epochs: %lld sequences of %lld tokens (%.0f%% padding), "
                "%lld steps, %lld assistant tokens in the loss",
                data.examples.size(),
                data.truncated ? (" (" + std::to_string(data.truncated) + " cut to --seq-len)").c_str() : "",
                static_cast<long long>(epochs), static_cast<long long>(batches.rows()), static_cast<long long>(o.seq_len),
                100.0 * batches.padding_share(), static_cast<long long>(o.steps),
                static_cast<long long>(batches.trained_tokens()));
  setup->summary = line;
  return setup;
}

}  // namespace

int run_sft(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 sft -m BASE --data FILE.jsonl... --out DIR [--epochs N] [--lr X] [--seq-len N] [--batch-tokens N] "
            "[--validation FILE.jsonl...] [--resume]\n\n"
            "Fine-tunes BASE on conversations, one JSON object per line: {\"messages\": [{\"role\": \"user\", "
            "\"content\": \"...\"}, {\"role\": \"assistant\", \"content\": \"...\"}]}, rendered with BASE's chat "
            "template. Only the assistant's tokens are in the loss; conversations are packed several to a sequence, "
            "each attending only to itself.",
            join_options(
                {{kModelOption,
                  {"data", 'd', true, "FILE      conversations, JSON Lines (repeatable; more files may follow)"},
                  {"out", 'o', true, "DIR       output: model, checkpoints, metrics.jsonl"},
                  {"epochs", 0, true, "N         passes over the data (default 2, DeepSeek-V2's)"},
                  {"seq-len", 0, true, "N         tokens per packed sequence, the longest conversation (default 1024, at "
                                       "most the model's max_position_embeddings)"},
                  {"batch-tokens", 0, true, "N         tokens per step (default 8192: 8 sequences of 1024)"},
                  {"seed", 0, true, "N         seed for the order of the conversations in each epoch (default 1)"},
                  {"validation", 0, true, "FILE      held-out conversations (repeatable): their loss on the assistant "
                                          "tokens is logged as val_loss every --eval-every steps and at the end"},
                  {"eval-every", 0, true, "N         steps between validations (default 100; with --validation)"},
                  {"expert-parallel", 0, true, "E         under mpirun: split the routed experts over groups of E ranks "
                                               "(divides the ranks and the experts; default 1)"}},
                 fine_tuning_options("2e-5"),
                 {kThreadsOption}}));
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  // Everything up to the first step runs on every rank and is checked on all of
  // them together (a rank that fails cannot leave the others waiting), and
  // before anything is written to --out.
  const auto& world = dist::world();
  std::unique_ptr<SftSetup> setup;
  set_up_on_all_ranks([&] { setup = parse_sft_setup(args, world.size()); });
  if (world.size() > 1) set_up_on_all_ranks([&] { check_ranks_agree(argc, argv, setup->batches->fingerprint()); });
  if (world.is_root())
    std::fprintf(stderr, "%s%s\n", setup->summary.c_str(),
                 world.size() > 1 ? (" on " + std::to_string(world.size()) + " ranks, expert parallelism " +
                                     std::to_string(setup->expert_parallel)).c_str() : "");
  const dist::ParallelLayout layout = dist::ParallelLayout::make(world, setup->expert_parallel, setup->config.n_routed_experts);
  train(setup->config, TokenData{}, setup->options, layout);
  if (world.is_root()) std::printf("fine-tuned model written to %s\n", setup->options.out_dir.c_str());
  return 0;
}

}  // namespace dsv2::cli
