// dsv2 bench: prefill and decode speed of a model next to the memory-bandwidth
// roofline of batch-1 decoding on this machine (see runtime/benchmark.h).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/parallel.h"
#include "model/model.h"
#include "runtime/benchmark.h"

namespace dsv2::cli {

int run_bench(int argc, char** argv) {
  Args args(argc, argv, "dsv2 bench -m DIR [--prompt N] [--gen N] [--ctx N] [--cache-type TYPE] [--threads N] [--json]",
            {kModelOption,
             {"prompt", 'p', true, "N         prompt tokens prefilled in one call (default 128)"},
             {"gen", 'n', true, "N         tokens decoded one at a time (default 32)"},
             {"ctx", 'c', true, "N         decode after this many cached tokens; those past the prompt are random latents (default: the prompt)"},
             {"seed", 0, true, "S         seed of the random token ids (default 1)"},
             {"json", 0, false, "          print one JSON object instead of a table"},
             kQuantizeOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  BenchOptions o;
  std::unique_ptr<Model> model;
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
    model = load_model(args, model_dir_option(args));
  });
  if (model->is_follower()) return model->follow(), 0;
  const BenchResult r = run_benchmark(*model, o);
  const double gb = 1e9, mib = 1024.0 * 1024.0;
  if (args.has("json")) {
    const nlohmann::json j = {{"threads", num_threads()},
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
