// dsv2 generate: a prompt (text or ids) in; generated text or ids out, streamed.
#include <chrono>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "model/model.h"
#include "model/mtp.h"
#include "runtime/generator.h"
#include "runtime/speculative.h"

namespace dsv2::cli {

namespace {
// Plain sampling at temperature 0.8: no truncation, no penalties unless asked for.
SamplingOptions generate_defaults() {
  SamplingOptions s;
  s.temperature = 0.8f;
  return s;
}
}  // namespace

int run_generate(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 generate [-m DIR] (--prompt TEXT | --ids \"...\") [-n N] [sampling options] [--seed S] "
            "[--ignore-eos] [--speculative mtp [--draft N]] [--stats]",
            join_options({{kModelOption,
                           {"prompt", 'p', true,
                            "TEXT      prompt text (needs tokenizer.json); the output is streamed text"},
                           {"ids", 0, true, "\"IDS\"     prompt token ids; the output is token ids"},
                           {"special", 0, false, "          recognise special-token text in --prompt"},
                           {"n", 'n', true, "N         number of tokens to generate (default 64)"},
                           {"ctx", 0, true, "N         context length: prompt + generated tokens stop there, with a notice "
                                            "(default: the model's max_position_embeddings)"},
                           {"ignore-eos", 0, false, "          keep generating after the end-of-sequence token"},
                           kSpeculativeOption,
                           kDraftOption,
                           {"stats", 0, false,
                            "          print one JSON line on stderr at the end: tokens, tokens_per_s, drafted, "
                            "accepted"}},
                          sampling_option_specs(generate_defaults()),
                          {kAttnOption, kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption}}));
  if (args.print_help_if_requested()) return 0;
  GenerationOptions options;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int32_t> prompt;
  std::unique_ptr<Model> owned_model;
  int64_t ctx = 0;
  bool speculative = false;
  SpeculativeOptions speculative_options;
  std::unique_ptr<MtpModule> mtp;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    const std::string dir = model_dir_option(args);
    const long long n = args.get_int("n", 64);
    if (n < 1 || n > 1'000'000) throw UsageError("option -n: must be between 1 and 1000000");
    options.max_tokens = n;
    options.sampling = parse_sampling(args, generate_defaults());
    options.ignore_stop = args.has("ignore-eos");
    options.path = parse_attention_path(args.get("attn", "auto"));
    speculative = speculative_option(args);
    speculative_options.draft = draft_option(args);
    if (speculative) check_speculative_sampling(options.sampling);
    tokenizer = Tokenizer::exists_in(dir) ? Tokenizer::load(dir) : nullptr;
    prompt = prompt_ids(args, tokenizer.get());
    cache_type_option(args);
    owned_model = load_model(args, dir);
    check_sampling_vocabulary(options.sampling, owned_model->config().vocab_size);
    if (speculative) mtp = std::make_unique<MtpModule>(*owned_model);  // errors name the file and tensor
    ctx = args.get_int("ctx", owned_model->config().max_position_embeddings);
    if (ctx < 1) throw UsageError("option --ctx: must be positive");
    if (static_cast<int64_t>(prompt.size()) >= ctx)
      throw UsageError("the prompt has " + std::to_string(prompt.size()) + " tokens, which fills the context of " +
                       std::to_string(ctx) + " (--ctx N allows more)");
  });
  if (owned_model->is_follower()) return owned_model->follow(), 0;
  Model& model = *owned_model;
  // Generation stops at the context length (the positions the model was made for), not past it.
  const int64_t room = ctx - static_cast<int64_t>(prompt.size());
  const bool cut = options.max_tokens > room;
  options.max_tokens = std::min<int64_t>(options.max_tokens, room);
  const long long n = options.max_tokens;
  const bool text_output = args.has("prompt");
  options.stop_ids = model.config().eos_token_ids;
  if (tokenizer && tokenizer->eos_id() >= 0) options.stop_ids.push_back(tokenizer->eos_id());
  // Speculative decoding writes up to --draft rows past the tokens it keeps.
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + n + (speculative ? speculative_options.draft : 0);
  LatentCache cache(model.config(), capacity, 0, cache_type_option(args));
  std::unique_ptr<StreamDecoder> stream = text_output ? std::make_unique<StreamDecoder>(*tokenizer) : nullptr;
  auto emit = [](const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  bool first = true;
  long long generated = 0;
  auto on_token = [&](int32_t id) {
    ++generated;
    const bool is_stop = std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    if (text_output) {
      if (!(is_stop && !options.ignore_stop)) emit(stream->push(id));  // the end marker is not printed as text
    } else {
      emit((first ? "" : " ") + std::to_string(id));
    }
    first = false;
    return true;
  };
  const auto start = std::chrono::steady_clock::now();
  SpeculativeStats stats;
  if (speculative) {
    auto mtp_cache = mtp->make_cache(capacity, cache_type_option(args));
    generate_speculative(model, *mtp, cache, *mtp_cache, prompt, options, speculative_options, on_token, &stats);
  } else {
    generate(model, cache, prompt, 0, options, on_token);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stream) emit(stream->finish());
  std::printf("\n");
  if (args.has("stats"))  // prefill included in the time
    std::fprintf(stderr, "{\"tokens\": %lld, \"tokens_per_s\": %.3f, \"drafted\": %lld, \"accepted\": %lld}\n",
                 generated, seconds > 0 ? generated / seconds : 0.0, static_cast<long long>(stats.drafted),
                 static_cast<long long>(stats.accepted));
  if (cut && generated == n)
    std::fprintf(stderr, "dsv2 generate: stopped at the context length (%lld tokens; --ctx N allows more)\n",
                 static_cast<long long>(ctx));
  return 0;
}

}  // namespace dsv2::cli
