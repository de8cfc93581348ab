// dsv2 chat: an interactive conversation in the terminal, streamed, in the
// model's chat template (DeepSeek-V2-Chat's format if it has none), the same
// one `dsv2 serve` uses. The latent cache keeps the conversation so each turn
// only prefills what is new.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "model/mtp.h"
#include "runtime/chat_history.h"
#include "runtime/chat_template.h"
#include "runtime/generator.h"
#include "runtime/speculative.h"

namespace dsv2::cli {

namespace {
// llama.cpp's sampling defaults (common/common.h: temperature 0.8, top-k 40,
// top-p 0.95, min-p 0.05, penalties over the last 64 tokens) with the repeat
// penalty of 1.1 its chat used to default to (it is 1.0, off, there now): on
// dsv2-mini, a base model, it cuts repeated phrases (word 4-grams) in replies
// from 1.0% to 0.3%, and at temperature 0.3 from 45% to 14%.
SamplingOptions chat_defaults() {
  SamplingOptions s;
  s.temperature = 0.8f;
  s.top_k = 40;
  s.top_p = 0.95f;
  s.min_p = 0.05f;
  s.repeat_penalty = 1.1f;
  s.repeat_last_n = 64;
  return s;
}
}  // namespace

int run_chat(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 chat [-m DIR] [--system TEXT] [-n N] [sampling options] [--seed S] [--ctx N] [--speculative mtp [--draft N]]\n\n"
            "The sampling defaults are llama.cpp's (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) with\n"
            "the repeat penalty 1.1 over the last 64 tokens that llama.cpp's chat used to default to.",
            join_options({{kModelOption,
                           {"system", 0, true, "TEXT      a system message that starts the conversation"},
                           {"n", 'n', true, "N         at most N tokens per reply (default 256)"},
                           {"ctx", 0, true, "N         context length in tokens (default: the model's, at most 4096); "
                                            "older turns are dropped to stay within it"},
                           kSpeculativeOption,
                           kDraftOption},
                          sampling_option_specs(chat_defaults()),
                          {kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption}}));
  if (args.print_help_if_requested()) return 0;
  std::string dir;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> owned_model;
  GenerationOptions options;
  int64_t ctx = 0;
  bool speculative = false;
  SpeculativeOptions speculative_options;
  std::unique_ptr<MtpModule> mtp;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    dir = model_dir_option(args);
    if (!Tokenizer::exists_in(dir)) throw Error(dir + ": chat needs tokenizer.json in the model directory");
    tokenizer = Tokenizer::load(dir);
    options.max_tokens = args.get_int("n", 256);
    if (options.max_tokens < 1) throw UsageError("option -n: must be at least 1");
    options.sampling = parse_sampling(args, chat_defaults());
    cache_type_option(args);
    owned_model = load_model(args, dir);
    check_sampling_vocabulary(options.sampling, owned_model->config().vocab_size);
    speculative = speculative_option(args);
    speculative_options.draft = draft_option(args);
    if (speculative) {
      check_speculative_sampling(options.sampling);
      mtp = std::make_unique<MtpModule>(*owned_model);
    }
    ctx = args.get_int("ctx", std::min<int64_t>(owned_model->config().max_position_embeddings, 4096));
    if (ctx < 16) throw UsageError("option --ctx: too small");
  });
  // Under mpirun rank 0 talks (mpirun gives it stdin); the others follow its steps.
  if (owned_model->is_follower()) return owned_model->follow(), 0;
  Model& model = *owned_model;
  options.stop_ids = model.config().eos_token_ids;
  if (tokenizer->eos_id() >= 0) options.stop_ids.push_back(tokenizer->eos_id());
  // Speculative decoding writes up to --draft rows past the tokens it keeps.
  const int64_t capacity = ctx + (speculative ? speculative_options.draft : 0);
  LatentCache cache(model.config(), capacity, 0, cache_type_option(args));
  std::unique_ptr<LatentCache> mtp_cache = speculative ? mtp->make_cache(capacity, cache_type_option(args)) : nullptr;
  const ChatRenderer render = make_chat_renderer(*tokenizer, dir + "/tokenizer_config.json");

  std::vector<ChatMessage> messages;
  if (args.has("system")) messages.push_back({"system", args.get("system")});
  std::vector<int32_t> in_cache;  // the tokens the cache holds
  bool said_dropping = false;     // the note about dropped turns is printed once
  const bool tty = ::isatty(STDIN_FILENO);
  if (tty) std::fprintf(stderr, "dsv2 chat with %s — an empty line or Ctrl-D ends it.\n", dir.c_str());
  std::string line;
  while (true) {
    if (tty) std::fprintf(stderr, "\n> ");
    if (!std::getline(std::cin, line) || line.empty()) break;
    messages.push_back({"user", line});
    std::vector<int32_t> prompt;
    auto fits = [&](const std::vector<ChatMessage>& conversation) {
      prompt = tokenizer->encode(render(conversation, true), {false, true});
      return static_cast<int64_t>(prompt.size()) + options.max_tokens <= ctx;
    };
    if (!fits(messages) && drop_oldest_turns(messages, fits) > 0) {
      if (!said_dropping)
        std::fprintf(stderr, "(the conversation no longer fits the context of %lld tokens: "
                             "its oldest turns are left out from now on)\n", static_cast<long long>(ctx));
      said_dropping = true;
      fits(messages);  // `prompt` for what is left
    }
    // Even alone with the system message, a long message may leave less room than -n: the reply gets what is left.
    GenerationOptions turn = options;
    turn.max_tokens = std::min<int64_t>(options.max_tokens, ctx - static_cast<int64_t>(prompt.size()));
    if (turn.max_tokens < 1) {
      std::fprintf(stderr, "(that message does not fit the context of %lld tokens; it was not sent)\n",
                   static_cast<long long>(ctx));
      messages.pop_back();
      continue;
    }
    StreamDecoder stream(*tokenizer);
    std::string reply;
    auto on_token = [&](int32_t id) {
      if (std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end()) return true;
      const std::string piece = stream.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
    // Speculative decoding prefills the whole conversation each turn: the MTP cache's rows past
    // the last verified position are drafting rows, not the conversation.
    const auto generated =
        speculative ? generate_speculative(model, *mtp, cache, *mtp_cache, prompt, turn, speculative_options, on_token)
                    : generate(model, cache, prompt, common_prefix(in_cache, prompt), turn, on_token);
    const std::string rest = stream.finish();
    reply += rest;
    std::printf("%s\n", rest.c_str());
    std::fflush(stdout);
    in_cache = prompt;
    in_cache.insert(in_cache.end(), generated.begin(), generated.end() - (generated.empty() ? 0 : 1));
    size_t start = reply.find_first_not_of(' ');
    messages.push_back({"assistant", start == std::string::npos ? "" : reply.substr(start)});
  }
  return 0;
}

}  // namespace dsv2::cli
