// dsv2: one binary, many subcommands. Exit code 0 on success; otherwise a
// one-line reason on stderr and 1 (bad input or failure) or 2 (bad usage).
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"info", dsv2::cli::run_info, "architecture, parameter counts, weight bytes and KV-cache size of a model"},
    {"logits", dsv2::cli::run_logits, "write the float32 logits of every input position to a file"},
    {"generate", dsv2::cli::run_generate, "generate text (or token ids) from a prompt"},
    {"chat", dsv2::cli::run_chat, "interactive chat in the terminal"},
    {"tokenize", dsv2::cli::run_tokenize, "text -> token ids with a model's tokenizer"},
    {"detokenize", dsv2::cli::run_detokenize, "token ids -> text"},
    {"tokenizer", dsv2::cli::run_tokenizer, "tokenizer train: learn a byte-level BPE vocabulary"},
    {"train", dsv2::cli::run_train, "train a DeepSeek-V2-architecture model from scratch"},
    {"eval", dsv2::cli::run_eval, "loss, perplexity and bits per byte of a model on text files"},
    {"pretokenize", dsv2::cli::run_pretokenize, "tokenize training text once into a .bin for dsv2 train"},
    {"serve", dsv2::cli::run_serve, "OpenAI-compatible HTTP server with continuous batching and a chat page"},
    {"quantize", dsv2::cli::run_quantize, "rewrite a model with its weights stored in another type"},
    {"init", dsv2::cli::run_init, "write a random-weight model with a DeepSeek release's exact shapes"},
    {"bench", dsv2::cli::run_bench, "prefill and decode tokens/s against the memory-bandwidth roofline"},
};

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
  throw UsageError("option --attn: '" + value + "' is not one of naive, absorbed");
}

std::optional<DType> quantize_option(const Args& args) {
  if (!args.has("quantize")) return std::nullopt;
  return parse_weight_type("quantize", args.get("quantize"));
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

void apply_thread_option(const Args& args) {
  if (!args.has("threads")) return;
  const long long threads = args.get_int("threads", 0);
  if (threads < 1 || threads > 1024) throw UsageError("option --threads: must be between 1 and 1024");
  set_num_threads(static_cast<int>(threads));
}

}  // namespace dsv2::cli

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const auto& command : kCommands) {
    if (name != command.name) continue;
    try {
      return command.run(argc - 2, argv + 2);
    } catch (const dsv2::cli::UsageError& e) {
      std::fprintf(stderr, "dsv2 %s: %s (see 'dsv2 %s --help')\n", command.name, e.what(), command.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dsv2 %s: error: %s\n", command.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dsv2: unknown command '%s' (see 'dsv2 --help')\n", name.c_str());
  return 2;
}
