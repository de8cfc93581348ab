// dsv2: one binary, many subcommands. Exit code 0 on success; otherwise a
// one-line reason on stderr and 1 (bad input or failure) or 2 (bad usage).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "dist/runtime.h"
#include "ops/gemm_q8.h"
#include "ops/matmul.h"
#include "runtime/speculative.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
  bool across_ranks;  // runs as one job under mpirun -np N > 1
};

constexpr Command kCommands[] = {
    {"info", dsv2::cli::run_info, "architecture, parameter counts, weight bytes and KV-cache size of a model", false},
    {"logits", dsv2::cli::run_logits, "write the float32 logits of every input position to a file", true},
    {"generate", dsv2::cli::run_generate, "generate text (or token ids) from a prompt", true},
    {"chat", dsv2::cli::run_chat, "interactive chat in the terminal", true},
    {"tokenize", dsv2::cli::run_tokenize, "text -> token ids with a model's tokenizer", false},
    {"detokenize", dsv2::cli::run_detokenize, "token ids -> text", false},
    {"tokenizer", dsv2::cli::run_tokenizer, "tokenizer train: learn a byte-level BPE vocabulary", false},
    {"train", dsv2::cli::run_train, "train a DeepSeek-V2-architecture model from scratch (also under mpirun)", true},
    {"eval", dsv2::cli::run_eval, "loss, perplexity and bits per byte of a model on text files", false},
    {"pretokenize", dsv2::cli::run_pretokenize, "tokenize training text once into a .bin for dsv2 train", false},
    {"serve", dsv2::cli::run_serve, "OpenAI-compatible HTTP server with continuous batching and a chat page", true},
    {"quantize", dsv2::cli::run_quantize, "rewrite a model with its weights stored in another type", false},
    {"init", dsv2::cli::run_init, "write a random-weight model with a DeepSeek release's exact shapes", false},
    {"bench", dsv2::cli::run_bench, "prefill and decode tokens/s against the memory-bandwidth roofline", true},
    {"niah", dsv2::cli::run_niah, "needle-in-a-haystack retrieval over context lengths and depths, with a heatmap", true},
    {"sft", dsv2::cli::run_sft, "supervised fine-tuning on conversations (JSON Lines), loss on the assistant's tokens (also under mpirun)", true},
    {"rm", dsv2::cli::run_rm, "train a reward model (scalar head, pair-wise or point-wise loss) from a fine-tuned model", false},
    {"rm-score", dsv2::cli::run_rm_score, "a reward model's scores for JSONL pairs or completions", false},
    {"grpo", dsv2::cli::run_grpo, "reinforcement learning with GRPO from prompts and a reward (verifier or command)", false},
};

// One line on stderr for a failed command: the usage hint for exit code 2.
void report(const char* command, const std::string& where, const char* message, int exit_code) {
  if (exit_code == 2)
    std::fprintf(stderr, "dsv2 %s%s: %s (see 'dsv2 %s --help')\n", command, where.c_str(), message, command);
  else
    std::fprintf(stderr, "dsv2 %s%s: error: %s\n", command, where.c_str(), message);
}

// A failure only this rank knows about: it reports it (naming itself when the
// job has several ranks) and, in a job of several ranks, ends the whole job at
// once rather than leave the others waiting for it.
int fail_alone(const char* command, const char* message, int exit_code) {
  const auto& world = dsv2::dist::world();
  if (world.size() == 1) {
    report(command, "", message, exit_code);
    return exit_code;
  }
  report(command, " (rank " + std::to_string(world.rank()) + ")", message, exit_code);
  dsv2::dist::abort_job(exit_code);
}

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: dsv2 <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun 'dsv2 <command> --help' for the options of a command.\n");
}

}  // namespace

namespace dsv2::cli {

AttentionPath parse_attention_path(const std::string& value) {
  if (value == "naive") return AttentionPath::kNaive;
  if (value == "absorbed") return AttentionPath::kAbsorbed;
  if (value == "auto") return AttentionPath::kAuto;
  throw UsageError("option --attn: '" + value + "' is not one of naive, absorbed, auto");
}

bool speculative_option(const Args& args) {
  if (!args.has("speculative")) {
    if (args.has("draft")) throw UsageError("option --draft: needs --speculative mtp");
    return false;
  }
  const std::string kind = args.get("speculative");
  if (kind != "mtp") throw UsageError("option --speculative: '" + kind + "' is not one of mtp");
  return true;
}

int64_t draft_option(const Args& args) {
  const long long n = args.get_int("draft", 1);
  if (n < 1 || n > 16) throw UsageError("option --draft: must be between 1 and 16");
  return n;
}

void check_speculative_sampling(const SamplingOptions& sampling) {
  std::string flag = speculative_sampling_problem(sampling);
  if (flag.empty()) return;
  std::replace(flag.begin(), flag.end(), '_', '-');
  throw UsageError("--speculative mtp keeps the model's distribution only without penalties: use --" + flag +
                   (flag == "repeat-penalty" ? " 1" : " 0") + " or --temperature 0");
}

std::optional<DType> quantize_option(const Args& args) {
  if (!args.has("quantize")) return std::nullopt;
  return parse_weight_type("quantize", args.get("quantize"));
}

void apply_activation_terms_option(const Args& args) {
  if (!args.has("activation-terms")) return;
  const long long terms = args.get_int("activation-terms", 2);
  if (terms != 1 && terms != 2) throw UsageError("option --activation-terms: must be 1 or 2");
  set_gemm_q8_activation_terms(static_cast<int>(terms));
  use_gemm_q8_for_prompts(true);
}

void apply_repack_option(const Args& args, Model& model) {
  if (args.has("repack")) model.repack_for_prompts();
}

CacheType cache_type_option(const Args& args) {
  try {
    return parse_cache_type(args.get("cache-type", "f32"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("option --cache-type: ") + e.what());
  }
}

DType parse_weight_type(const std::string& option, const std::string& type) {
  if (type == "bf16") return DType::BF16;
  if (type == "f32") return DType::F32;
  if (type == "q8") return DType::I8;
  if (type == "q4") return DType::U8;
  if (type == "fp8") return DType::F8_E4M3;
  throw UsageError("option --" + option + ": '" + type + "' is not one of bf16, f32, q8, q4, fp8");
}

std::string model_dir_option(const Args& args) {
  if (args.has("model")) return args.get("model");
  if (const char* env = std::getenv("DSV2_MODEL"); env && *env) return env;
#ifdef DSV2_DEFAULT_MODEL
  if (std::filesystem::is_directory(DSV2_DEFAULT_MODEL)) return DSV2_DEFAULT_MODEL;
#endif
  throw UsageError("no model: give -m DIR (or set DSV2_MODEL)");
}

std::vector<int32_t> prompt_ids(const Args& args, const Tokenizer* tokenizer) {
  if (args.has("ids") == args.has("prompt")) throw UsageError("give exactly one of --ids and --prompt");
  if (args.has("ids")) return parse_ids(args.get("ids"), "ids");
  if (!tokenizer) throw UsageError("--prompt needs a tokenizer.json in the model directory (or use --ids)");
  auto ids = tokenizer->encode(args.get("prompt"), {true, args.has("special")});
  if (ids.empty()) throw UsageError("--prompt: the prompt encodes to no tokens");
  return ids;
}

void check_ranks_agree(int argc, char** argv, uint64_t data_fingerprint) {
  const auto& world = dist::world();
  std::string mine;
  for (int i = 0; i < argc; ++i) mine += std::string(argv[i]) + '\n';
  const std::vector<std::string> commands = world.all_gather(mine);
  const std::vector<uint64_t> fingerprints = world.all_gather_value<uint64_t>(data_fingerprint);
  for (int r = 1; r < world.size(); ++r) {
    if (commands[r] != commands[0]) {
      auto words = [](const std::string& text) {
        std::vector<std::string> out;
        for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) out.push_back(text.substr(at, nl - at));
        return out;
      };
      const auto a = words(commands[0]), b = words(commands[r]);
      size_t i = 0;
      while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
      auto from = [i](const std::vector<std::string>& w) {  // two words from the first difference
        std::string s;
        for (size_t j = i; j < w.size() && j < i + 2; ++j) s += (s.empty() ? "" : " ") + w[j];
        return s.empty() ? std::string("nothing more") : "'" + s + "'";
      };
      throw UsageError("rank " + std::to_string(r) + " was started with different options than rank 0 (" + from(b) +
                       " where rank 0 has " + from(a) + "): start every rank with the same command");
    }
    if (fingerprints[r] != fingerprints[0])
      throw Error("rank " + std::to_string(r) + " read different data than rank 0 (same files, different contents): "
                  "every rank needs the same --data");
  }
}

void set_up_on_all_ranks(const std::function<void()>& setup) {
  dist::run_on_all_ranks(dist::world(), setup,
                         [](const std::exception& e) { return dynamic_cast<const UsageError*>(&e) != nullptr; });
}

std::unique_ptr<Model> load_model(const Args& args, const std::string& dir) {
  const auto& world = dist::world();
  if (args.has("expert-parallel") && args.get_int("expert-parallel", 0) != world.size())
    throw UsageError("option --expert-parallel: inference splits the model over all " + std::to_string(world.size()) +
                     " rank(s), so it must be " + std::to_string(world.size()) +
                     (world.size() == 1 ? " (start dsv2 under mpirun -np N to split it)" : ""));
  apply_activation_terms_option(args);
  auto model = world.size() == 1 ? std::make_unique<Model>(dir, quantize_option(args))
                                 : std::make_unique<Model>(dir, quantize_option(args), world);
  apply_repack_option(args, *model);
  return model;
}

void apply_thread_option(const Args& args) {
  if (!args.has("threads")) {
    // Ranks started on one machine share its cores.
    if (dist::local_ranks() > 1) set_num_threads(std::max(1, omp_get_num_procs() / dist::local_ranks()));
    return;
  }
  const long long threads = args.get_int("threads", 0);
  if (threads < 1 || threads > 1024) throw UsageError("option --threads: must be between 1 and 1024");
  set_num_threads(static_cast<int>(threads));
}

}  // namespace dsv2::cli

int main(int argc, char** argv) {
  // Under mpirun: MPI starts here and stops when main returns (see dist/runtime.h).
  dsv2::dist::Runtime mpi(&argc, &argv);
  const auto& world = dsv2::dist::world();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    if (world.is_root()) print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const auto& command : kCommands) {
    if (name != command.name) continue;
    if (world.size() > 1 && !command.across_ranks) {  // every rank sees the same: no rank waits for another
      if (world.is_root())
        report(command.name, "", "does not run across MPI ranks; start it without mpirun (or with -np 1)", 2);
      return 2;
    }
    try {
      return command.run(argc - 2, argv + 2);
    } catch (const dsv2::dist::JobError& e) {  // every rank has it: rank 0 reports
      if (world.is_root()) report(command.name, "", e.what(), e.exit_code);
      return e.exit_code;
    } catch (const dsv2::cli::UsageError& e) {
      return fail_alone(command.name, e.what(), 2);
    } catch (const std::exception& e) {
      return fail_alone(command.name, e.what(), 1);
    }
  }
  if (world.is_root()) std::fprintf(stderr, "dsv2: unknown command '%s' (see 'dsv2 --help')\n", name.c_str());
  return 2;
}
