// dsv2 quantize: rewrite a model directory with its weights in another type.
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "model/convert.h"

namespace dsv2::cli {

int run_quantize(int argc, char** argv) {
  Args args(argc, argv, "dsv2 quantize -m IN -o OUT --type bf16|f32|q8|q4|fp8",
            {kModelOption,
             {"output", 'o', true, "DIR       output model directory (config, weights, tokenizer files)"},
             {"type", 0, true, "TYPE      weight storage: bf16, f32, q8 or q4 (block-quantized, dsv2 only), fp8 (DeepSeek-V3's e4m3 with 128x128 scales); docs/FORMATS.md"}});
  if (args.print_help_if_requested()) return 0;
  const std::string in = model_dir_option(args), out = args.require("output"), type = args.require("type");
  const DType target = parse_weight_type("type", type);
  const bool tty = ::isatty(STDERR_FILENO);
  convert_model_dir(in, out, target, [&](int64_t done, int64_t total) {
    if (tty) std::fprintf(stderr, "\r%lld / %lld tensors", static_cast<long long>(done), static_cast<long long>(total));
  });
  if (tty) std::fprintf(stderr, "\n");
  std::printf("%s -> %s (%s)\n", in.c_str(), out.c_str(), type.c_str());
  return 0;
}

}  // namespace dsv2::cli
