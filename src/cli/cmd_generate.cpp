// dsv2 generate: a prompt (text or ids) in; generated text or ids out, streamed.
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "model/model.h"
#include "runtime/generator.h"

namespace dsv2::cli {

SamplingOptions parse_sampling(const Args& args, float default_temperature) {
  SamplingOptions s;
  s.temperature = static_cast<float>(args.get_double("temperature", default_temperature));
  s.top_p = static_cast<float>(args.get_double("top-p", 1.0));
  s.top_k = args.get_int("top-k", 0);
  const long long seed = args.get_int("seed", 0);
  if (seed < 0) throw UsageError("option --seed: must not be negative");
  s.seed = static_cast<uint64_t>(seed);
  if (!(s.temperature >= 0)) throw UsageError("option --temperature: must be >= 0");
  if (!(s.top_p > 0 && s.top_p <= 1)) throw UsageError("option --top-p: must be in (0, 1]");
  if (s.top_k < 0) throw UsageError("option --top-k: must be >= 0");
  return s;
}

int run_generate(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 generate [-m DIR] (--prompt TEXT | --ids \"...\") [-n N] [--temperature T] [--top-p P] [--top-k K] "
            "[--seed S] [--ignore-eos]",
            {kModelOption,
             {"prompt", 'p', true, "TEXT      prompt text (needs tokenizer.json); the output is streamed text"},
             {"ids", 0, true, "\"IDS\"     prompt token ids; the output is token ids"},
             {"special", 0, false, "          recognise special-token text in --prompt"},
             {"n", 'n', true, "N         number of tokens to generate (default 64)"},
             {"temperature", 0, true, "T         sampling temperature, 0 = greedy (default 0.8)"},
             {"top-p", 0, true, "P         nucleus sampling threshold (default 1.0)"},
             {"top-k", 0, true, "K         sample among the K most likely tokens, 0 = all (default 0)"},
             {"seed", 0, true, "S         random seed (default 0)"},
             {"ignore-eos", 0, false, "          keep generating after the end-of-sequence token"},
             kAttnOption, kQuantizeOption, kCacheTypeOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string dir = model_dir_option(args);
  const long long n = args.get_int("n", 64);
  if (n < 1 || n > 1'000'000) throw UsageError("option -n: must be between 1 and 1000000");
  GenerationOptions options;
  options.max_tokens = n;
  options.sampling = parse_sampling(args, 0.8f);
  options.ignore_stop = args.has("ignore-eos");
  options.path = parse_attention_path(args.get("attn", "absorbed"));

  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::exists_in(dir) ? Tokenizer::load(dir) : nullptr;
  const std::vector<int32_t> prompt = prompt_ids(args, tokenizer.get());
  const bool text_output = args.has("prompt");
  Model model(dir, quantize_option(args));
  options.stop_ids = model.config().eos_token_ids;
  if (tokenizer && tokenizer->eos_id() >= 0) options.stop_ids.push_back(tokenizer->eos_id());
  LatentCache cache(model.config(), static_cast<int64_t>(prompt.size()) + n, 0, cache_type_option(args));
  std::unique_ptr<StreamDecoder> stream = text_output ? std::make_unique<StreamDecoder>(*tokenizer) : nullptr;
  auto emit = [](const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  bool first = true;
  generate(model, cache, prompt, 0, options, [&](int32_t id) {
    const bool is_stop = std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    if (text_output) {
      if (!(is_stop && !options.ignore_stop)) emit(stream->push(id));  // the end marker is not printed as text
    } else {
      emit((first ? "" : " ") + std::to_string(id));
    }
    first = false;
    return true;
  });
  if (stream) emit(stream->finish());
  std::printf("\n");
  return 0;
}

}  // namespace dsv2::cli
