// dsv2 init: a random-weight model with a DeepSeek release's exact shapes, for
// measuring speed and memory on the real sizes without downloading weights.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "model/random_model.h"
#include "model/weights.h"

namespace dsv2::cli {

int run_init(int argc, char** argv) {
  Args args(argc, argv, "dsv2 init --like deepseek-v2-lite|deepseek-v2|deepseek-v3 -o DIR [--dtype bf16|f32|q8|q4|fp8] [--layers N] "
            "[--mtp-layers 0|1]",
            {{"like", 0, true, "NAME      published shapes to copy: deepseek-v2-lite, deepseek-v2, deepseek-v3"},
             {"output", 'o', true, "DIR       output model directory (config.json + model.safetensors)"},
             {"dtype", 0, true, "TYPE      weight storage: bf16 (default), f32, q8, q4 or fp8"},
             {"layers", 0, true, "N         keep only the first N layers (default: all)"},
             {"mtp-layers", 0, true, "N         MTP layers after them, 0 or 1 (default: the release's, 1 for V3)"},
             {"seed", 0, true, "S         random seed (default 1)"}});
  if (args.print_help_if_requested()) return 0;
  Config config = published_config(args.require("like"));
  const std::string out = args.require("output");
  const DType dtype = parse_weight_type("dtype", args.get("dtype", "bf16"));
  if (args.has("layers")) {
    const long long layers = args.get_int("layers", 0);
    if (layers < 1 || layers > config.num_hidden_layers)
      throw UsageError("option --layers: must be between 1 and " + std::to_string(config.num_hidden_layers));
    config.num_hidden_layers = layers;
  }
  if (args.has("mtp-layers")) {
    const long long mtp = args.get_int("mtp-layers", 0);
    if (mtp < 0 || mtp > 1) throw UsageError("option --mtp-layers: must be 0 or 1 (dsv2 drafts with one MTP layer)");
    config.num_nextn_predict_layers = mtp;  // on V2 shapes too: a V3-style drafter measured at V2-Lite's size
  }
  const ParameterCounts counts = count_parameters(config);
  std::printf("%s: %.2fB parameters (%.2fB active per token), %lld layers\n", args.get("like").c_str(),
              static_cast<double>(counts.total) / 1e9, static_cast<double>(counts.active) / 1e9,
              static_cast<long long>(config.num_hidden_layers));
  std::fflush(stdout);
  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  write_random_model(config, dtype, out, static_cast<uint64_t>(args.get_int("seed", 1)), [&](uint64_t done, uint64_t total) {
    static uint64_t shown = 0;
    if (!tty || (done - shown < (uint64_t(256) << 20) && done != total)) return;
    shown = done;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = static_cast<double>(done) / std::max(s, 1e-9);
    std::fprintf(stderr, "\r%.2f / %.2f GB, %.0f MB/s, ETA %.0f s   ", done / 1e9, total / 1e9, rate / 1e6,
                 static_cast<double>(total - done) / std::max(rate, 1.0));
  });
  if (tty) std::fprintf(stderr, "\n");
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace dsv2::cli
