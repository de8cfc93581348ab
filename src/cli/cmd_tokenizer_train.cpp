// dsv2 tokenizer train: a byte-level BPE vocabulary with DeepSeek's
// pre-tokenizer rules, written as tokenizer.json + tokenizer_config.json.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/pre_tokenizer.h"

namespace dsv2::cli {

int run_tokenizer(int argc, char** argv) {
  if (argc < 1 || std::string(argv[0]) != "train") {
    if (argc >= 1 && (std::string(argv[0]) == "--help" || std::string(argv[0]) == "-h")) {
      std::printf("usage: dsv2 tokenizer train --vocab-size N --pre deepseek-v2|deepseek-v3 --out DIR FILE...\n");
      return 0;
    }
    throw UsageError("expected 'dsv2 tokenizer train ...'");
  }
  Args args(argc - 1, argv + 1, "dsv2 tokenizer train --vocab-size N --pre deepseek-v2|deepseek-v3 --out DIR FILE...",
            {{"vocab-size", 0, true, "N         vocabulary size, special tokens and 256 byte symbols included"},
             {"pre", 0, true, "RULES     pre-tokenizer rules: deepseek-v2 (digits one by one) or deepseek-v3"},
             {"out", 'o', true, "DIR       output directory (created if needed)"},
             {"min-frequency", 0, true, "N         smallest pair count that still makes a merge (default 2)"}});
  if (args.print_help_if_requested()) return 0;
  BpeTrainerOptions options;
  options.vocab_size = args.get_int("vocab-size", 0);
  const long long min_frequency = args.get_int("min-frequency", 2);
  if (min_frequency < 0) throw UsageError("option --min-frequency: must not be negative");
  options.min_frequency = static_cast<uint64_t>(min_frequency);
  options.special_tokens = deepseek_special_tokens();
  if (options.vocab_size < static_cast<int64_t>(options.special_tokens.size()) + 256 || options.vocab_size > 10'000'000)
    throw UsageError("option --vocab-size: must be at least " + std::to_string(options.special_tokens.size() + 256) +
                     " (special tokens + 256 bytes)");
  const std::string out_dir = args.require("out");
  const nlohmann::json pre_json = deepseek_pre_tokenizer_json(args.require("pre"));
  if (args.positional().empty()) throw UsageError("no training files given");
  const auto pre = make_pre_tokenizer(pre_json, "pre-tokenizer");

  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  std::unordered_map<std::string, uint64_t> counts;
  size_t bytes = 0;
  for (const auto& file : args.positional()) {
    const std::string text = read_text_file(file);
    bytes += text.size();
    count_words(text, *pre, counts);
    if (tty) std::fprintf(stderr, "\rcounted %zu words in %.1f MB", counts.size(), bytes / 1e6);
  }
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const TrainedBpe bpe = train_bpe(counts, options, [&](int64_t done, int64_t total) {
    if (!tty) return;
    const double elapsed = seconds();
    const double eta = done > 0 ? elapsed / done * (total - done) : 0.0;
    std::fprintf(stderr, "\rmerging: %lld / %lld tokens, %.0f s elapsed, ETA %.0f s   ", (long long)done, (long long)total,
                 elapsed, eta);
  });
  if (tty) std::fprintf(stderr, "\n");

  std::filesystem::create_directories(out_dir);
  const auto dir = std::filesystem::path(out_dir);
  write_file_atomically((dir / "tokenizer.json").string(),
                        trained_tokenizer_json(bpe, pre_json, options.special_tokens).dump(1) + "\n");
  write_file_atomically((dir / "tokenizer_config.json").string(),
                        trained_tokenizer_config_json(options.special_tokens).dump(1) + "\n");
  std::fprintf(stderr, "%zu tokens (%zu merges) from %.1f MB in %.1f s -> %s\n", bpe.tokens.size(), bpe.merges.size(),
               bytes / 1e6, seconds(), out_dir.c_str());
  return 0;
}

}  // namespace dsv2::cli
