// dsv2 generate: a prompt (text or ids) in; generated text or ids out, streamed.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv2::cli {

int run_generate(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 generate -m DIR (--prompt TEXT | --ids \"...\") -n N [--temperature T] [--top-p P] [--top-k K] [--seed S] "
            "[--ignore-eos]",
            {kModelOption,
             {"prompt", 'p', true, "TEXT      prompt text (needs tokenizer.json); the output is streamed text"},
             {"ids", 0, true, "\"IDS\"     prompt token ids; the output is token ids"},
             {"special", 0, false, "          recognise special-token text in --prompt"},
             {"n", 'n', true, "N         number of tokens to generate (default 32)"},
             {"temperature", 0, true, "T         sampling temperature, 0 = greedy (default 1.0)"},
             {"top-p", 0, true, "P         nucleus sampling threshold (default 1.0)"},
             {"top-k", 0, true, "K         sample among the K most likely tokens, 0 = all (default 0)"},
             {"seed", 0, true, "S         random seed (default 0)"},
             {"ignore-eos", 0, false, "         keep generating after the end-of-sequence token"},
             kAttnOption,
             kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  const std::string dir = args.require("model");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::exists_in(dir) ? Tokenizer::load(dir) : nullptr;
  const std::vector<int32_t> prompt = prompt_ids(args, tokenizer.get());
  const bool text_output = args.has("prompt");
  const long long n = args.get_int("n", 32);
  if (n < 0 || n > 1'000'000) throw UsageError("option -n: must be between 0 and 1000000");
  SamplingOptions sampling;
  sampling.temperature = static_cast<float>(args.get_double("temperature", 1.0));
  sampling.top_p = static_cast<float>(args.get_double("top-p", 1.0));
  sampling.top_k = args.get_int("top-k", 0);
  const long long seed = args.get_int("seed", 0);
  if (seed < 0) throw UsageError("option --seed: must not be negative");
  sampling.seed = static_cast<uint64_t>(seed);
  if (!(sampling.temperature >= 0)) throw UsageError("option --temperature: must be >= 0");
  if (!(sampling.top_p > 0 && sampling.top_p <= 1)) throw UsageError("option --top-p: must be in (0, 1]");
  if (sampling.top_k < 0) throw UsageError("option --top-k: must be >= 0");
  const bool ignore_eos = args.has("ignore-eos");
  const AttentionPath path = parse_attention_path(args.get("attn", "absorbed"));

  Model model(dir);
  const Config& config = model.config();
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  LatentCache cache(config, prompt_len + std::max<long long>(n, 1));
  Sampler sampler(sampling);
  std::vector<float> logits(config.vocab_size);
  std::vector<int64_t> stop_ids = config.eos_token_ids;
  if (tokenizer && tokenizer->eos_id() >= 0) stop_ids.push_back(tokenizer->eos_id());
  std::unique_ptr<StreamDecoder> stream = text_output ? std::make_unique<StreamDecoder>(*tokenizer) : nullptr;
  auto emit = [](const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  model.forward(prompt.data(), prompt_len, cache, path, logits.data(), /*last_only=*/true);
  for (long long i = 0; i < n; ++i) {
    const int32_t next = sampler.sample(logits.data(), config.vocab_size);
    const bool is_eos = std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end();
    if (is_eos && !ignore_eos && text_output) break;  // text output does not print the end marker
    if (text_output)
      emit(stream->push(next));
    else
      emit((i ? " " : "") + std::to_string(next));
    if ((is_eos && !ignore_eos) || i + 1 == n) break;
    model.forward(&next, 1, cache, path, logits.data(), true);
  }
  if (stream) emit(stream->finish());
  std::printf("\n");
  return 0;
}

}  // namespace dsv2::cli
