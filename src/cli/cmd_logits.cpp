// dsv2 logits: the reference-comparison tool. Output format: raw little-endian
// float32, one row of vocab_size values per input position, T rows, row-major.
#include <bit>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "io/atomic_file.h"
#include "model/model.h"
#include "ops/gemm_bf16.h"

namespace dsv2::cli {

int run_logits(int argc, char** argv) {
  Args args(argc, argv, "dsv2 logits -m DIR (--ids \"1 2 3 ...\" | --prompt TEXT) -o FILE [--prefill N] [--attn absorbed|naive|auto] [--float32-activations]",
            {kModelOption,
             {"ids", 0, true, "\"IDS\"     input token ids, separated by spaces or commas"},
             {"prompt", 'p', true, "TEXT      input text, encoded with the model's tokenizer (BOS included)"},
             {"special", 0, false, "          recognise special-token text in --prompt"},
             {"output", 'o', true, "FILE      where to write T x vocab_size float32 logits"},
             {"prefill", 0, true, "N         run the first N tokens as one batch, the rest one by one (default: all)"},
             {"attn", 0, true, "PATH      MLA form: absorbed (default: the server's, so its echoed logprobs equal these), naive or auto"},
             {"float32-activations", 0, false, "          a prompt's products without bf16 activations, as references compute: float32 (q8/q4 weights: the integer GEMM, two int8 terms); default: as generation"},
             kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  std::string output;
  std::vector<int32_t> ids;
  int64_t prefill = 0;
  AttentionPath path{};
  std::unique_ptr<Model> model;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    const std::string dir = model_dir_option(args);
    output = args.require("output");
    const std::unique_ptr<Tokenizer> tokenizer = args.has("prompt") && Tokenizer::exists_in(dir) ? Tokenizer::load(dir) : nullptr;
    ids = prompt_ids(args, tokenizer.get());
    prefill = args.get_int("prefill", static_cast<int64_t>(ids.size()));
    if (prefill < 1 || prefill > static_cast<int64_t>(ids.size()))
      throw UsageError("option --prefill: must be between 1 and the number of ids (" + std::to_string(ids.size()) + ")");
    path = parse_attention_path(args.get("attn", "absorbed"));
    use_gemm_bf16_for_prefill(!args.has("float32-activations"));
    cache_type_option(args);
    model = load_model(args, dir);
  });
  if (model->is_follower()) return model->follow(), 0;

  const auto total = static_cast<int64_t>(ids.size());
  const int64_t vocab = model->config().vocab_size;
  LatentCache cache(model->config(), total, 0, cache_type_option(args));
  std::vector<float> logits(static_cast<size_t>(total * vocab));
  model->forward(ids.data(), prefill, cache, path, logits.data());
  for (int64_t t = prefill; t < total; ++t) model->forward(&ids[t], 1, cache, path, logits.data() + t * vocab);

  AtomicFile out(output);
  static_assert(std::endian::native == std::endian::little, "logits files are little-endian");
  out.write(logits.data(), logits.size() * sizeof(float));
  out.commit();
  return 0;
}

}  // namespace dsv2::cli
