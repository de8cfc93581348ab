// dsv2 train / eval / pretokenize.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/runtime.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "runtime/logprobs.h"
#include "train/data.h"
#include "train/presets.h"
#include "train/trainer.h"
#include "train/weights_io.h"

namespace dsv2::cli {

namespace {

TokenData load_data(const Args& args, const Tokenizer& tokenizer, double validation_share) {
  std::vector<std::string> files = args.get_all("data");
  for (const auto& p : args.positional()) files.push_back(p);
  if (files.empty()) throw UsageError("no training data: give --data FILE...");
  if (files.size() == 1 && files[0].size() > 4 && files[0].substr(files[0].size() - 4) == ".bin") return load_token_data(files[0]);
  return tokenize_files(files, tokenizer, validation_share);
}

// FNV-1a over the token streams: ranks compare it to be sure they read the same data.
uint64_t data_fingerprint(const TokenData& data) {
  uint64_t h = 1469598103934665603ull;
  for (const TokenStream* s : {&data.train, &data.validation}) {
    for (int32_t t : s->tokens) h = (h ^ static_cast<uint32_t>(t)) * 1099511628211ull;
    h = (h ^ static_cast<uint64_t>(s->tokens.size())) * 1099511628211ull;
  }
  return h;
}

// --rope-scaling yarn and its parameters: YaRN on the decoupled RoPE key and
// query, written into the config as DeepSeek's checkpoints carry it
// (rope_scaling {type, factor, original_max_position_embeddings, beta_fast,
// beta_slow, mscale, mscale_all_dim}); max_position_embeddings becomes
// original × factor. The defaults are DeepSeek-V2's (β_fast 32, β_slow 1,
// mscale = mscale_all_dim = 0.707, so the attention scale grows by
// √t = 0.0707·ln s + 1).
void apply_rope_scaling_options(const Args& args, Config& config) {
  const bool any = args.has("rope-scaling") || args.has("rope-factor") || args.has("original-max") ||
                   args.has("yarn-beta-fast") || args.has("yarn-beta-slow") || args.has("mscale") || args.has("mscale-all-dim");
  if (!any) return;
  if (args.get("rope-scaling", "") != "yarn") throw UsageError("option --rope-scaling: 'yarn' is the scaling DeepSeek models use (give --rope-scaling yarn)");
  RopeScaling& y = config.rope_scaling;
  const int64_t original = args.get_int(
      "original-max", y.type == "yarn" ? y.original_max_position_embeddings : config.max_position_embeddings);
  if (original < 1) throw UsageError("option --original-max: must be positive");
  y.type = "yarn";
  y.factor = args.get_double("rope-factor", 0.0);
  if (!(y.factor > 1.0)) throw UsageError("option --rope-factor: give the extension factor, above 1 (e.g. 8)");
  y.original_max_position_embeddings = original;
  y.beta_fast = args.get_double("yarn-beta-fast", 32.0);
  y.beta_slow = args.get_double("yarn-beta-slow", 1.0);
  y.mscale = args.get_double("mscale", 0.707);
  y.mscale_all_dim = args.get_double("mscale-all-dim", 0.707);
  if (!(y.beta_fast > 0) || !(y.beta_slow > 0)) throw UsageError("options --yarn-beta-fast/--yarn-beta-slow: must be positive");
  if (!(y.mscale >= 0) || !(y.mscale_all_dim >= 0)) throw UsageError("options --mscale/--mscale-all-dim: must not be negative");
  config.max_position_embeddings = static_cast<int64_t>(std::llround(static_cast<double>(original) * y.factor));
}

// --mtp-depth and the λ schedule (DeepSeek-V3 §2.2 and §4.2: 0.3 for the first
// 10T of 14.8T tokens, then 0.1).
void apply_mtp_options(const Args& args, Config& config, MtpLambda& lambda) {
  if (args.has("mtp-depth")) {
    const long long depth = args.get_int("mtp-depth", 0);
    if (depth < 0 || depth > 8) throw UsageError("option --mtp-depth: give 0 to 8 modules (V3 trains with 1)");
    config.num_nextn_predict_layers = depth;
  }
  lambda.first = args.get_double("mtp-lambda", lambda.first);
  lambda.then = args.get_double("mtp-lambda-later", lambda.then);
  lambda.switch_share = args.get_double("mtp-lambda-switch", lambda.switch_share);
  if (!(lambda.first >= 0) || !(lambda.then >= 0)) throw UsageError("options --mtp-lambda/--mtp-lambda-later: must not be negative");
  if (!(lambda.switch_share >= 0 && lambda.switch_share <= 1)) throw UsageError("option --mtp-lambda-switch: must be in [0, 1]");
  if (config.num_nextn_predict_layers == 0 &&
      (args.has("mtp-lambda") || args.has("mtp-lambda-later") || args.has("mtp-lambda-switch")))
    throw UsageError("options --mtp-lambda*: the model has no MTP modules (give --mtp-depth D)");
  if (args.has("freeze-model") && (config.num_nextn_predict_layers == 0 || !args.has("init-from")))
    throw UsageError("option --freeze-model: trains only MTP modules on a trained model (give --init-from DIR and --mtp-depth D)");
}

// Everything `dsv2 train` needs before its first step, from the command line.
struct TrainSetup {
  Config config;
  TrainerOptions options;
  TokenData data;
  int expert_parallel = 1;
};

TrainSetup parse_train_setup(const Args& args, int ranks) {
  TrainSetup setup;
  Config& config = setup.config;
  TrainerOptions& o = setup.options;
  int& expert_parallel = setup.expert_parallel;
  apply_thread_option(args);
  if (args.has("model-config") + args.has("preset") + args.has("init-from") != 1)
    throw UsageError("give exactly one of --model-config, --preset and --init-from");
  // Continued training takes the tokenizer of the model it starts from unless told otherwise.
  if (!args.has("tokenizer") && !(args.has("init-from") && Tokenizer::exists_in(args.get("init-from"))))
    throw UsageError("missing --tokenizer");
  const std::string tok_path = args.get("tokenizer", args.get("init-from"));
  const auto tokenizer = Tokenizer::load(tok_path);
  if (args.has("preset")) {
    config = preset_config(args.get("preset"), tokenizer->vocab_size());
  } else {
    const std::string source = args.has("init-from") ? args.get("init-from") : args.get("model-config");
    config = load_config(source);
    if (config.vocab_size < tokenizer->vocab_size())
      throw Error(source + ": vocab_size " + std::to_string(config.vocab_size) + " is smaller than the tokenizer's " +
                  std::to_string(tokenizer->vocab_size()));
    o.init_from = args.get("init-from");
  }
  apply_rope_scaling_options(args, config);
  apply_mtp_options(args, config, o.mtp_lambda);
  o.out_dir = args.require("out");
  o.tokenizer_dir = std::filesystem::is_directory(tok_path) ? tok_path : std::filesystem::path(tok_path).parent_path().string();
  o.steps = args.get_int("steps", 1000);
  o.seq_len = args.get_int("seq-len", 256);
  o.batch_tokens = args.get_int("batch-tokens", 8192);
  o.lr.peak = args.get_double("lr", 4.2e-4);
  o.lr.warmup_steps = args.get_int("warmup", std::min<int64_t>(2000, o.steps / 10));
  // Continued training (a context extension) holds the LR after its warm-up, as DeepSeek-V2's
  // long-context stage continues from the end of pre-training.
  o.lr.kind = args.get("schedule", o.init_from.empty() ? "step" : "constant");
  if (o.lr.kind != "step" && o.lr.kind != "cosine" && o.lr.kind != "constant") throw UsageError("option --schedule: step, cosine or constant");
  if (args.has("batch-ramp")) {
    const std::string v = args.get("batch-ramp");
    const auto comma = v.find(',');
    if (comma == std::string::npos) throw UsageError("option --batch-ramp: expected S,N");
    try {
      size_t used_start = 0, used_steps = 0;
      o.ramp.start = std::stod(v.substr(0, comma), &used_start);
      o.ramp.steps = std::stoll(v.substr(comma + 1), &used_steps);
      if (used_start != comma || used_steps != v.size() - comma - 1) throw std::invalid_argument(v);
    } catch (const std::logic_error&) {  // invalid_argument, out_of_range
      throw UsageError("option --batch-ramp: '" + v + "' is not S,N (a number, then a whole number of steps)");
    }
  }
  o.init_std = static_cast<float>(args.get_double("init-std", 0.006));
  o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
  o.moe.alpha_expert = args.get_double("alpha1", 0.0);
  o.moe.alpha_device = args.get_double("alpha2", 0.0);
  o.moe.alpha_comm = args.get_double("alpha3", 0.0);
  expert_parallel = static_cast<int>(args.get_int("expert-parallel", 1));
  if (const std::string problem = dist::ParallelLayout::check(ranks, expert_parallel, config.n_routed_experts);
      !problem.empty())
    throw UsageError(problem + (ranks == 1 && expert_parallel > 1 ? " (start dsv2 under mpirun -np N)" : ""));
  o.moe.devices = args.get_int("devices", expert_parallel);
  if (ranks > 1 && o.moe.devices != expert_parallel)
    throw UsageError("option --devices: under mpirun the devices are the " + std::to_string(expert_parallel) +
                     " ranks of an expert-parallel group (--expert-parallel); leave --devices out");
  o.moe.capacity_factor = args.get_double("capacity-factor", 0.0);
  o.never_drop_share = args.get_double("never-drop", 0.1);
  o.passkey_share = args.get_double("passkey-share", 0.0);
  if (!(o.passkey_share >= 0.0 && o.passkey_share <= 1.0)) throw UsageError("option --passkey-share: must be in [0, 1]");
  if (o.passkey_share > 0.0) o.passkey = PasskeyFormat::from(*tokenizer);
  if (const std::string loss = args.get("passkey-loss", "all"); loss != "all" && loss != "answer")
    throw UsageError("option --passkey-loss: expected all or answer, got '" + loss + "'");
  else if (args.has("passkey-loss") && !o.passkey)
    throw UsageError("option --passkey-loss: there are no passkey episodes without --passkey-share");
  else if (o.passkey) o.passkey->answer_only_loss = loss == "answer";
  o.moe.bias_update_speed = args.get_double("bias-update", 0.0);
  o.moe.alpha_sequence = args.get_double("sequence-alpha", 0.0);
  o.eval_every = args.get_int("eval-every", 100);
  o.checkpoint_every = args.get_int("checkpoint-every", 100);
  o.save_bf16 = args.has("save-bf16");
  o.resume = args.has("resume");
  o.freeze_model = args.has("freeze-model");
  if (o.steps < 1 || o.seq_len < 2 || o.batch_tokens < o.seq_len) throw UsageError("need --steps >= 1, --seq-len >= 2, --batch-tokens >= --seq-len");
  if (o.seq_len <= config.num_nextn_predict_layers)
    throw UsageError("option --seq-len: must exceed the MTP depth (" + std::to_string(config.num_nextn_predict_layers) + ")");
  if (o.seq_len > config.max_position_embeddings)
    throw UsageError("option --seq-len: " + std::to_string(o.seq_len) + " exceeds the model's max_position_embeddings (" +
                     std::to_string(config.max_position_embeddings) + "); extend it with --rope-scaling yarn --rope-factor F");
  if (o.moe.devices < 1 || (config.n_routed_experts && config.n_routed_experts % o.moe.devices))
    throw UsageError("option --devices: must divide the number of routed experts");
  if (args.has("device-limit")) {
    const long long m = args.get_int("device-limit", 0);
    if (m < 1 || m > o.moe.devices) throw UsageError("option --device-limit: must be between 1 and --devices");
    config.topk_method = "group_limited_greedy";  // one group per device: V2's device-limited routing
    config.n_group = o.moe.devices;
    config.topk_group = m;
  }
  if (o.moe.bias_update_speed > 0 && config.topk_method != "noaux_tc")
    throw UsageError("option --bias-update: the model's topk_method must be noaux_tc");
  if (ranks > 1) {
    const int64_t sequences = std::max<int64_t>(1, std::llround(o.batch_tokens / o.seq_len * o.ramp.share(0)));
    if (sequences < ranks)
      throw UsageError("each of the " + std::to_string(ranks) + " ranks needs at least one sequence per step: " +
                       "--batch-tokens must be at least ranks × --seq-len" + (o.ramp.steps > 0 ? " from the first step of --batch-ramp" : ""));
  }
  // Validate the final config exactly as loading it would.
  config = parse_config(config_json(config), "model config");
  setup.data = load_data(args, *tokenizer, args.get_double("validation-share", 0.02));
  return setup;
}

}  // namespace

int run_train(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 train (--model-config FILE | --preset NAME | --init-from DIR) --tokenizer FILE|DIR --data FILE... --out DIR "
            "[--steps N] [--seq-len N] [--batch-tokens N] [--lr X] [--resume]\n\n"
            "Context extension (DeepSeek-V2 §3.1.4): --init-from DIR --rope-scaling yarn --rope-factor F --original-max N\n"
            "continues training a trained model at a longer --seq-len with YaRN written into its config.\n"
            "Multi-token prediction (DeepSeek-V3 §2.2): --mtp-depth D trains D MTP modules with the model (from scratch, or\n"
            "--init-from a model without them: the modules start from random init), written as V3's model.layers.<L+k>.*.",
            {{"model-config", 0, true, "FILE      config.json of the model to train (Hugging Face fields)"},
             {"preset", 0, true, "NAME      a built-in shape: tiny, small, small-dense"},
             {"init-from", 0, true, "DIR       start from this model's weights and config (continued training; fresh optimizer, "
                                    "constant LR after the warm-up unless --schedule says otherwise; its tokenizer by default)"},
             {"rope-scaling", 0, true, "yarn      extend the context with YaRN (on the decoupled RoPE key/query)"},
             {"rope-factor", 0, true, "F         YaRN scale s: max_position_embeddings becomes original x F"},
             {"original-max", 0, true, "N         the length the model was trained at (default: its max_position_embeddings)"},
             {"yarn-beta-fast", 0, true, "X         YaRN beta_fast (default 32)"},
             {"yarn-beta-slow", 0, true, "X         YaRN beta_slow (default 1)"},
             {"mscale", 0, true, "X         YaRN mscale (default 0.707, DeepSeek-V2's)"},
             {"mscale-all-dim", 0, true, "X         YaRN mscale_all_dim (default 0.707: attention scale x (0.0707 ln F + 1)^2)"},
             {"mtp-depth", 0, true, "D         multi-token-prediction modules to train (default: the config's num_nextn_predict_layers)"},
             {"mtp-lambda", 0, true, "X         MTP loss weight λ at first (default 0.3, V3's)"},
             {"mtp-lambda-later", 0, true, "X         λ after --mtp-lambda-switch (default 0.1, V3's)"},
             {"mtp-lambda-switch", 0, true, "X         share of the run's tokens after which λ drops (default 0.676: V3's 10T of 14.8T)"},
             {"freeze-model", 0, false, "          train only the MTP modules; the --init-from model (embedding and head included) stays fixed"},
             {"tokenizer", 0, true, "PATH      tokenizer.json or its directory (copied into --out)"},
             {"data", 'd', true, "FILE      UTF-8 text (repeatable; more files may follow), or one .bin from pretokenize"},
             {"out", 'o', true, "DIR       output: model, checkpoints, metrics.jsonl"},
             {"steps", 0, true, "N         optimizer steps (default 1000)"},
             {"seq-len", 0, true, "N         tokens per sequence (default 256)"},
             {"batch-tokens", 0, true, "N         tokens per step (default 8192)"},
             {"lr", 0, true, "X         peak learning rate (default 4.2e-4)"},
             {"warmup", 0, true, "N         warm-up steps (default 2000 or 10% of steps if fewer)"},
             {"schedule", 0, true, "KIND      step (x0.316 at 60% and 90%, default), cosine or constant"},
             {"batch-ramp", 0, true, "S,N       start at share S of the batch, reach all of it after N steps"},
             {"init-std", 0, true, "X         init standard deviation (default 0.006)"},
             {"seed", 0, true, "N         seed for init and data order (default 1)"},
             {"validation-share", 0, true, "X         share of each file held out (default 0.02)"},
             {"alpha1", 0, true, "X         expert-level balance loss weight (V2: 0.003)"},
             {"alpha2", 0, true, "X         device-level balance loss weight (V2: 0.05)"},
             {"alpha3", 0, true, "X         communication balance loss weight (V2: 0.02)"},
             {"devices", 0, true, "D         spread routed experts over D groups (default 1; under mpirun: the --expert-parallel ranks)"},
             {"expert-parallel", 0, true, "E         under mpirun: split the routed experts over groups of E ranks (divides the ranks and the experts; default 1)"},
             {"device-limit", 0, true, "M         route each token to experts on at most M devices"},
             {"capacity-factor", 0, true, "X         token dropping: per-device budget (V2: 1.0; default off)"},
             {"never-drop", 0, true, "X         share of sequences never dropped (default 0.1)"},
             {"passkey-share", 0, true, "X         share of sequences that are passkey-retrieval episodes of training text (long-context "
                                        "training; default 0; docs/LONG_CONTEXT.md)"},
             {"passkey-loss", 0, true, "all|answer loss over a whole passkey episode (default) or over its answer only"},
             {"bias-update", 0, true, "X         V3 aux-loss-free balancing speed (e.g. 0.001; needs noaux_tc)"},
             {"sequence-alpha", 0, true, "X         V3 sequence-wise balance loss weight (e.g. 1e-4)"},
             {"eval-every", 0, true, "N         validation every N steps (default 100)"},
             {"checkpoint-every", 0, true, "N         checkpoint every N steps (default 100)"},
             {"save-bf16", 0, false, "          write the final model.safetensors in bfloat16"},
             {"resume", 0, false, "          continue from the last checkpoint in --out"},
             kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  // Everything up to the first step runs on every rank and is checked on all
  // of them together, so that a rank that fails here cannot leave the others waiting.
  const auto& world = dist::world();
  TrainSetup setup;
  set_up_on_all_ranks([&] { setup = parse_train_setup(args, world.size()); });
  if (world.size() > 1) set_up_on_all_ranks([&] { check_ranks_agree(argc, argv, data_fingerprint(setup.data)); });
  const Config& config = setup.config;
  const TrainerOptions& o = setup.options;
  const TokenData& data = setup.data;
  const int expert_parallel = setup.expert_parallel;
  if (world.is_root())
    std::fprintf(stderr, "training on %zu tokens (%.1f MB), validating on %zu%s\n", data.train.tokens.size(),
                 data.train.bytes / 1e6, data.validation.tokens.size(),
                 world.size() > 1 ? (" with " + std::to_string(world.size()) + " ranks, expert parallelism " +
                                     std::to_string(expert_parallel)).c_str() : "");
  const dist::ParallelLayout layout = dist::ParallelLayout::make(world, expert_parallel, config.n_routed_experts);
  const double val = train(config, data, o, layout);
  if (!std::isnan(val) && world.is_root()) std::printf("final validation loss %.4f (perplexity %.2f)\n", val, std::exp(val));
  return 0;
}

int run_pretokenize(int argc, char** argv) {
  Args args(argc, argv, "dsv2 pretokenize --tokenizer FILE|DIR --out FILE.bin [--validation-share X] FILE...",
            {{"tokenizer", 0, true, "PATH      tokenizer.json or its directory"},
             {"out", 'o', true, "FILE      the token file to write (.bin)"},
             {"validation-share", 0, true, "X         share of each file held out (default 0.02)"}});
  if (args.print_help_if_requested()) return 0;
  const auto tokenizer = Tokenizer::load(args.require("tokenizer"));
  if (args.positional().empty()) throw UsageError("no input files");
  const TokenData data = tokenize_files(args.positional(), *tokenizer, args.get_double("validation-share", 0.02));
  save_token_data(data, args.require("out"));
  std::printf("%zu training and %zu validation tokens -> %s\n", data.train.tokens.size(), data.validation.tokens.size(),
              args.get("out").c_str());
  return 0;
}

int run_eval(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 eval -m DIR FILE... [--held-out X] [--seq-len N] [--max-tokens N] [--by-position N] [--json]\n"
            "       dsv2 eval -m DIR --task FILE.jsonl... [--limit N] [--json]\n"
            "       dsv2 eval -m DIR --answers FILE.jsonl... [--reward exact-answer|format | --reward-cmd CMD] "
            "[--max-new-tokens N] [--samples G --temperature T] [--limit N] [--completions FILE] [--json]",
            {kModelOption,
             {"held-out", 0, true, "X         evaluate only the last X of each file, split as 'dsv2 train --validation-share X' splits it"},
             {"seq-len", 0, true, "N         tokens per evaluation window (default 256)"},
             {"max-tokens", 0, true, "N         stop after N tokens per file (default: all)"},
             {"by-position", 0, true, "N         also the loss by position in the window, in buckets of N positions (long context)"},
             {"task", 0, true,
              "FILE      multiple-choice task, JSON Lines (repeatable): accuracy as lm-evaluation-harness computes it"},
             {"answers", 0, true,
              "FILE      prompts with checkable answers, JSON Lines as dsv2 grpo reads them (repeatable): completions "
              "scored by a reward, per \"kind\" field"},
             {"reward", 0, true, "NAME      --answers: exact-answer (default) or format"},
             {"reward-cmd", 0, true, "CMD       --answers: score with an external command, as dsv2 grpo --reward-cmd"},
             {"max-new-tokens", 0, true, "N         --answers: tokens per completion at most (default 64)"},
             {"samples", 0, true, "G         --answers: completions per prompt (default 1; more need --temperature)"},
             {"temperature", 0, true, "T         --answers: sampling temperature (default 0: greedy)"},
             {"seed", 0, true, "N         --answers: sampling seed (default 1)"},
             {"batch", 0, true, "N         --answers: prompts decoded together (default 16)"},
             {"completions", 0, true, "FILE      --answers: also write every prompt, completion and reward (JSON Lines)"},
             {"limit", 0, true, "N         --task, --answers: only the first N items of each file (the harness's --limit)"},
             {"json", 0, false, "          one JSON object per file (or task) and for the total"},
             kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string dir = model_dir_option(args);
  const bool tasks = args.has("task"), answers = args.has("answers");
  if ((tasks || answers) && !args.positional().empty()) throw UsageError("give text files, --task or --answers files, not several");
  if (tasks && answers) throw UsageError("give --task or --answers files, not both");
  if (!tasks && !answers && args.positional().empty()) throw UsageError("no files to evaluate");
  const CacheType cache_type = cache_type_option(args);
  if (!Tokenizer::exists_in(dir)) throw Error(dir + ": no tokenizer.json in the model directory");
  const auto tokenizer = Tokenizer::load(dir);
  apply_activation_terms_option(args);
  Model model(dir, quantize_option(args));
  apply_repack_option(args, model);
  if (tasks) return eval_tasks(args, model, *tokenizer, cache_type), 0;
  if (answers) return eval_answers(args, model, *tokenizer, dir), 0;
  const int64_t seq_len = args.get_int("seq-len", 256), max_tokens = args.get_int("max-tokens", 0);
  if (seq_len < 2) throw UsageError("option --seq-len: must be at least 2");
  const int64_t vocab = model.config().vocab_size;
  double total_nats = 0.0;
  int64_t total_tokens = 0, total_bytes = 0;
  std::vector<float> logits(seq_len * vocab);
  auto report = [&](const std::string& name, double nats, int64_t tokens, int64_t bytes) {
    const double loss = tokens ? nats / tokens : 0.0, bpb = bytes ? nats / std::log(2.0) / bytes : 0.0;
    if (args.has("json"))
      std::printf("%s\n", nlohmann::json({{"file", name}, {"tokens", tokens}, {"bytes", bytes}, {"loss", loss},
                                         {"perplexity", std::exp(loss)}, {"bits_per_byte", bpb}}).dump().c_str());
    else
      std::printf("%-40s tokens %9lld  loss %.4f  ppl %9.3f  bits/byte %.4f\n", name.c_str(), (long long)tokens, loss,
                  std::exp(loss), bpb);
  };
  const int64_t bucket = args.get_int("by-position", 0);
  if (bucket < 0) throw UsageError("option --by-position: must be positive");
  std::vector<double> by_position(bucket > 0 ? (seq_len + bucket - 1) / bucket : 0, 0.0);
  std::vector<int64_t> tokens_at(by_position.size(), 0);
  const double held_out = args.get_double("held-out", 0.0);
  if (!(held_out >= 0.0 && held_out < 1.0)) throw UsageError("option --held-out: must be in [0, 1)");
  for (const auto& file : args.positional()) {
    std::string text = read_text_file(file);
    if (held_out > 0.0) text.erase(0, validation_cut(text, held_out));
    const auto ids = tokenizer->encode(text, {true, false});
    double nats = 0.0;
    int64_t tokens = 0;
    const int64_t limit = max_tokens > 0 ? std::min<int64_t>(max_tokens + 1, ids.size()) : static_cast<int64_t>(ids.size());
    for (int64_t start = 0; start + 1 < limit; start += seq_len) {
      const int64_t n = std::min<int64_t>(seq_len, limit - 1 - start);
      LatentCache cache(model.config(), n, 0, cache_type);
      model.forward(ids.data() + start, n, cache, AttentionPath::kAbsorbed, logits.data());
      for (int64_t t = 0; t < n; ++t) {
        const float* row = logits.data() + t * vocab;
        const double loss = log_sum_exp(row, vocab) - row[ids[start + t + 1]];
        nats += loss;
        if (bucket > 0) by_position[t / bucket] += loss, tokens_at[t / bucket] += 1;
      }
      tokens += n;
    }
    // Bytes of the text the counted targets cover (all of it unless --max-tokens cut it short).
    const int64_t bytes = limit == static_cast<int64_t>(ids.size())
                              ? static_cast<int64_t>(text.size())
                              : static_cast<int64_t>(tokenizer->decode(std::vector<int32_t>(ids.begin() + 1, ids.begin() + limit), true).size());
    report(file, nats, tokens, bytes);
    total_nats += nats, total_tokens += tokens, total_bytes += bytes;
  }
  if (args.positional().size() > 1) report("total", total_nats, total_tokens, total_bytes);
  for (size_t i = 0; i < by_position.size(); ++i) {  // over all files
    const double loss = tokens_at[i] ? by_position[i] / static_cast<double>(tokens_at[i]) : 0.0;
    const int64_t first = static_cast<int64_t>(i) * bucket, last = std::min(seq_len, first + bucket) - 1;
    if (args.has("json"))
      std::printf("%s\n", nlohmann::json({{"positions", {first, last}}, {"tokens", tokens_at[i]}, {"loss", loss},
                                          {"perplexity", std::exp(loss)}}).dump().c_str());
    else
      std::printf("positions %6lld-%-6lld tokens %9lld  loss %.4f  ppl %9.3f\n", (long long)first, (long long)last,
                  (long long)tokens_at[i], loss, std::exp(loss));
  }
  return 0;
}

}  // namespace dsv2::cli
