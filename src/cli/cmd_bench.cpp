// dsv2 bench: prefill and decode speed of a model next to the memory-bandwidth
// roofline of batch-1 decoding on this machine (see runtime/benchmark.h).
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/parallel.h"
#include "model/model.h"
#include "model/mtp.h"
#include "runtime/benchmark.h"
#include "runtime/speculative.h"

namespace dsv2::cli {

namespace {
struct SpeculativeBench {
  double greedy_tokens_per_s = 0.0, speculative_tokens_per_s = 0.0;
  SpeculativeStats stats;
};

// Greedy generation of o.generate tokens after a random prompt, plain and with the MTP
// drafter (wall time, the prefill included in both): what --speculative buys on this model.
SpeculativeBench bench_speculative(Model& model, const BenchOptions& o, int64_t draft) {
  MtpModule mtp(model);
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> prompt(o.prompt);
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % model.config().vocab_size);
  GenerationOptions g;
  g.max_tokens = o.generate;
  g.sampling.temperature = 0.0f;
  g.ignore_stop = true;
  const int64_t capacity = o.prompt + o.generate + draft;
  LatentCache cache(model.config(), capacity, 0, o.cache_type);
  auto mtp_cache = mtp.make_cache(capacity, o.cache_type);
  auto seconds = [](auto&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  SpeculativeBench b;
  const auto keep = [](int32_t) { return true; };
  b.greedy_tokens_per_s = o.generate / seconds([&] { generate(model, cache, prompt, 0, g, keep); });
  SpeculativeOptions s;
  s.draft = draft;
  b.speculative_tokens_per_s =
      o.generate / seconds([&] { generate_speculative(model, mtp, cache, *mtp_cache, prompt, g, s, keep, &b.stats); });
  return b;
}
}  // namespace

int run_bench(int argc, char** argv) {
  Args args(argc, argv, "dsv2 bench -m DIR [--prompt N] [--gen N] [--ctx N] [--cache-type TYPE] [--threads N] [--json] "
            "[--speculative mtp [--draft N]]",
            {kModelOption,
             {"prompt", 'p', true, "N         prompt tokens prefilled in one call (default 128)"},
             {"gen", 'n', true, "N         tokens decoded one at a time (default 32)"},
             {"ctx", 'c', true, "N         decode after this many cached tokens; those past the prompt are random latents (default: the prompt)"},
             {"seed", 0, true, "S         seed of the random token ids (default 1)"},
             {"json", 0, false, "          print one JSON object instead of a table"},
             kSpeculativeOption, kDraftOption,
             kQuantizeOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  BenchOptions o;
  std::unique_ptr<Model> model;
  bool speculative = false;
  int64_t draft = 1;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    o.prompt = args.get_int("prompt", 128);
    o.generate = args.get_int("gen", 32);
    o.context = args.get_int("ctx", 0);
    o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
    o.cache_type = cache_type_option(args);
    if (o.prompt < 1 || o.prompt > (1 << 20)) throw UsageError("option --prompt: must be between 1 and 1048576");
    if (o.generate < 1 || o.generate > 100000) throw UsageError("option --gen: must be between 1 and 100000");
    if (o.context < 0 || o.context > (1 << 20)) throw UsageError("option --ctx: must be between 0 and 1048576");
    speculative = speculative_option(args);
    draft = draft_option(args);
    if (speculative && o.context > o.prompt)
      throw UsageError("option --ctx: random latents have no MTP rows; --speculative benchmarks after the prompt");
    model = load_model(args, model_dir_option(args));
    if (speculative) MtpModule check(*model);  // a model without an MTP layer fails here, on every rank
  });
  if (model->is_follower()) return model->follow(), 0;
  const BenchResult r = run_benchmark(*model, o);
  const SpeculativeBench sb = speculative ? bench_speculative(*model, o, draft) : SpeculativeBench{};
  const double gb = 1e9, mib = 1024.0 * 1024.0;
  if (args.has("json")) {
    nlohmann::json j = {{"threads", num_threads()},
                              {"prompt_tokens", r.prompt_tokens},
                              {"generated_tokens", r.generated_tokens},
                              {"context", r.context},
                              {"cache_type", cache_type_name(o.cache_type)},
                              {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                              {"prefill_flops_per_s", r.prefill_flops_per_s},
                              {"decode_tokens_per_s", r.decode_tokens_per_s},
                              {"weight_bytes_per_token", r.bytes_per_token.weights},
                              {"cache_bytes_per_token", r.bytes_per_token.cache},
                              {"bandwidth_bytes_per_s", r.bandwidth_bytes_per_s},
                              {"roofline_tokens_per_s", r.roofline_tokens_per_s},
                              {"roofline_share", r.roofline_share},
                              {"peak_rss_bytes", r.peak_rss_bytes},
                              {"ranks", r.rank_peak_rss_bytes.size()},
                              {"rank_peak_rss_bytes", r.rank_peak_rss_bytes},
                              {"rank_expert_skip_share", r.rank_expert_skip_share},
                              {"exchange_bytes_per_token", r.exchange_bytes_per_token}};
    if (speculative) {
      j["greedy_tokens_per_s"] = sb.greedy_tokens_per_s;
      j["speculative_tokens_per_s"] = sb.speculative_tokens_per_s;
      j["draft"] = draft;
      j["drafted"] = sb.stats.drafted;
      j["accepted"] = sb.stats.accepted;
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("threads          %d\n", num_threads());
  std::printf("prefill          %lld tokens: %.1f tokens/s, %.1f GFLOP/s\n", (long long)r.prompt_tokens,
              r.prefill_tokens_per_s, r.prefill_flops_per_s / 1e9);
  std::printf("decode           %lld tokens after %lld cached: %.2f tokens/s (median step)\n",
              (long long)r.generated_tokens, (long long)r.context, r.decode_tokens_per_s);
  std::printf("read per token   %.1f MB weights + %.2f MB latent cache (%s)\n", r.bytes_per_token.weights / 1e6,
              r.bytes_per_token.cache / 1e6, cache_type_name(o.cache_type).c_str());
  std::printf("bandwidth        %.2f GB/s measured (read, %d threads)\n", r.bandwidth_bytes_per_s / gb, num_threads());
  std::printf("roofline         %.2f tokens/s; achieved %.1f%%\n", r.roofline_tokens_per_s, 100.0 * r.roofline_share);
  std::printf("peak RSS         %.1f MiB\n", static_cast<double>(r.peak_rss_bytes) / mib);
  if (speculative)
    std::printf("speculative      %lld greedy tokens: %.2f tokens/s with MTP drafts of %lld vs %.2f plain (%.2fx); "
                "%lld of %lld drafts accepted\n",
                (long long)o.generate, sb.speculative_tokens_per_s, (long long)draft, sb.greedy_tokens_per_s,
                sb.speculative_tokens_per_s / sb.greedy_tokens_per_s, (long long)sb.stats.accepted,
                (long long)sb.stats.drafted);
  if (r.rank_peak_rss_bytes.size() > 1) {
    std::printf("ranks            %zu; exchanged %.1f KB per decoded token\n", r.rank_peak_rss_bytes.size(),
                r.exchange_bytes_per_token / 1e3);
    for (size_t i = 0; i < r.rank_peak_rss_bytes.size(); ++i)
      std::printf("  rank %-3zu       peak RSS %.1f MiB; routed experts skipped in %.0f%% of MoE layer steps\n", i,
                  static_cast<double>(r.rank_peak_rss_bytes[i]) / mib, 100.0 * r.rank_expert_skip_share[i]);
  }
  return 0;
}

}  // namespace dsv2::cli
