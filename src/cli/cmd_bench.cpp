// dsv2 bench: prefill and decode speed of a model next to the memory-bandwidth
// roofline of batch-1 decoding on this machine (see runtime/benchmark.h).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/parallel.h"
#include "model/model.h"
#include "model/mtp.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/matmul.h"
#include "ops/peaks.h"
#include "runtime/benchmark.h"
#include "runtime/speculative_bench.h"

namespace dsv2::cli {

int run_bench(int argc, char** argv) {
  Args args(argc, argv, "dsv2 bench -m DIR [--prompt N] [--gen N] [--ctx N] [--attn auto|naive|absorbed] [--warmup] [--cache-type TYPE] [--threads N] [--json] "
            "[--speculative mtp [--draft N] [--step-runs N]]\n\n"
            "With --speculative mtp: greedy tokens/s with and without MTP drafts, and the medians of N alternated\n"
            "runs of a 1-token decoding step, a verification step (1 + draft tokens) and one MTP draft row after the\n"
            "prompt, with the speedup they imply at acceptance rates 0.6-0.9 (runtime/speculative_bench.h).",
            {kModelOption,
             {"prompt", 'p', true, "N         prompt tokens prefilled in one call (default 128)"},
             {"gen", 'n', true, "N         tokens decoded one at a time (default 32)"},
             {"ctx", 'c', true, "N         decode after this many cached tokens; those past the prompt are random latents (default: the prompt)"},
             {"seed", 0, true, "S         seed of the random token ids (default 1)"},
             {"attn", 0, true, "PATH      MLA form of the prefill: auto (default: fewer multiply-adds), naive or absorbed; decoding is absorbed"},
             {"warmup", 0, false, "          prefill the prompt once, untimed, before the measured prefill (steady state: the first prompt after loading also faults in its buffers)"},
             {"json", 0, false, "          print one JSON object instead of a table"},
             kSpeculativeOption, kDraftOption,
             {"step-runs", 0, true, "N         with --speculative: alternated runs of each step timed (default 9)"},
             kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  BenchOptions o;
  std::unique_ptr<Model> model;
  bool speculative = false;
  int64_t draft = 1, step_runs = 9;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    o.prompt = args.get_int("prompt", 128);
    o.generate = args.get_int("gen", 32);
    o.context = args.get_int("ctx", 0);
    o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
    o.warmup = args.has("warmup");
    o.cache_type = cache_type_option(args);
    o.prefill_path = parse_attention_path(args.get("attn", "auto"));
    if (o.prompt < 1 || o.prompt > (1 << 20)) throw UsageError("option --prompt: must be between 1 and 1048576");
    if (o.generate < 1 || o.generate > 100000) throw UsageError("option --gen: must be between 1 and 100000");
    if (o.context < 0 || o.context > (1 << 20)) throw UsageError("option --ctx: must be between 0 and 1048576");
    speculative = speculative_option(args);
    draft = draft_option(args);
    step_runs = args.get_int("step-runs", 9);
    if (step_runs < 1 || step_runs > 10000) throw UsageError("option --step-runs: must be between 1 and 10000");
    if (!speculative && args.has("step-runs")) throw UsageError("option --step-runs: needs --speculative mtp");
    if (speculative && o.context > o.prompt)
      throw UsageError("option --ctx: random latents have no MTP rows; --speculative benchmarks after the prompt");
    model = load_model(args, model_dir_option(args));
    if (speculative) MtpModule check(*model);  // a model without an MTP layer fails here, on every rank
  });
  if (model->is_follower()) return model->follow(), 0;
  const BenchResult r = run_benchmark(*model, o);
  const SpeculativeBench sb = speculative ? bench_speculative(*model, o, draft, step_runs) : SpeculativeBench{};
  // Prefill against the peak of the arithmetic it runs: the int8 dot product
  // for q8/q4 weights (gemm_q8), the bf16 dot product for bf16 weights where
  // gemm_bf16's vdpbf16ps kernel runs (prompts of >= kGemmBf16MinTokens),
  // float32 FMA for the rest (float32 GEMMs).
  const ArithmeticPeaks peaks = measure_arithmetic_peaks();
  const PromptGemm prompt_kind = prompt_gemm(model->weights().layers.back().self_attn.o_proj, o.prompt);
  const bool int8_prefill = prompt_kind == PromptGemm::kQ8 && peaks.int8_dot_ops > 0.0;
  const bool bf16_prefill = prompt_kind == PromptGemm::kBf16 && std::string(gemm_bf16_kernel()) == "avx512-bf16" &&
                            peaks.bf16_dot_flops > 0.0;
  const char* prompt_gemm_name = prompt_kind == PromptGemm::kQ8     ? "int8"
                                 : prompt_kind == PromptGemm::kBf16 ? "bf16"
                                                                    : "float32";
  const double prefill_peak = int8_prefill ? peaks.int8_dot_ops : bf16_prefill ? peaks.bf16_dot_flops : peaks.fp32_fma_flops;
  const std::string prefill_peak_kind = int8_prefill   ? "int8 " + peaks.int8_kernel
                                        : bf16_prefill ? std::string("bf16 dot vdpbf16ps")
                                                       : "fp32 fma " + peaks.simd_target;
  const double prefill_peak_share = r.prefill_flops_per_s / prefill_peak;
  const char* prefill_form = r.prefill_path == AttentionPath::kNaive ? "naive" : "absorbed";
  const double acceptance[] = {0.6, 0.7, 0.8, 0.9};
  const double gb = 1e9, mib = 1024.0 * 1024.0;
  if (args.has("json")) {
    nlohmann::json j = {{"threads", num_threads()},
                        {"prompt_gemm", prompt_gemm_name},
                        {"activation_terms", gemm_q8_activation_terms()},
                        {"repacked_bytes", model->repacked_bytes()},
                        {"released_bytes", model->released_bytes()},
                        {"warmup", o.warmup},
                              {"prompt_tokens", r.prompt_tokens},
                              {"generated_tokens", r.generated_tokens},
                              {"context", r.context},
                              {"cache_type", cache_type_name(o.cache_type)},
                              {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                              {"prefill_flops_per_s", r.prefill_flops_per_s},
                              {"prefill_attention", prefill_form},
                              {"decode_tokens_per_s", r.decode_tokens_per_s},
                              {"weight_bytes_per_token", r.bytes_per_token.weights},
                              {"cache_bytes_per_token", r.bytes_per_token.cache},
                              {"bandwidth_bytes_per_s", r.bandwidth_bytes_per_s},
                              {"roofline_tokens_per_s", r.roofline_tokens_per_s},
                              {"roofline_share", r.roofline_share},
                              {"fp32_fma_peak_flops_per_s", peaks.fp32_fma_flops},
                              {"int8_dot_peak_ops_per_s", peaks.int8_dot_ops},
                              {"bf16_dot_peak_flops_per_s", peaks.bf16_dot_flops},
                              {"prefill_peak_kind", prefill_peak_kind},
                              {"prefill_peak_share", prefill_peak_share},
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
      j["step_runs"] = sb.step_runs;
      j["step_1_s"] = sb.step_1_s;
      j["verify_s"] = sb.verify_s;
      j["mtp_draft_s"] = sb.mtp_s;
      j["step_1_cpu_s"] = sb.step_1_cpu_s;
      j["verify_cpu_s"] = sb.verify_cpu_s;
      j["mtp_draft_cpu_s"] = sb.mtp_cpu_s;
      nlohmann::json implied;
      for (double a : acceptance) implied[std::to_string(a).substr(0, 3)] = implied_speedup(sb, draft, a);
      j["implied_speedup"] = implied;
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("threads          %d\n", num_threads());
  std::printf("prefill          %lld tokens: %.1f tokens/s, %.1f GFLOP/s (%s attention)\n", (long long)r.prompt_tokens,
              r.prefill_tokens_per_s, r.prefill_flops_per_s / 1e9, prefill_form);
  std::printf("prompt GEMM      %s (the larger products of a prompt)\n", prompt_gemm_name);
  std::printf("prefill vs peak  %.1f%% of %.1f G/s (%s; fp32 fma %.1f, int8 %.1f, bf16 dot %.1f G/s measured)\n",
              100.0 * prefill_peak_share, prefill_peak / 1e9, prefill_peak_kind.c_str(), peaks.fp32_fma_flops / 1e9,
              peaks.int8_dot_ops / 1e9, peaks.bf16_dot_flops / 1e9);
  std::printf("decode           %lld tokens after %lld cached: %.2f tokens/s (median step)\n",
              (long long)r.generated_tokens, (long long)r.context, r.decode_tokens_per_s);
  if (model->repacked_bytes() > 0)
    std::printf("repacked         %.1f MiB of prompt panels, %.1f MiB of rows they replace released\n",
                model->repacked_bytes() / mib, model->released_bytes() / mib);
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
  if (speculative) {
    std::printf("steps            medians of %lld: decode step %.2f ms, verify (%lld tokens) %.2f ms = %.3fx, "
                "MTP draft %.2f ms = %.3fx\n",
                (long long)sb.step_runs, sb.step_1_s * 1e3, (long long)draft + 1, sb.verify_s * 1e3,
                sb.verify_s / sb.step_1_s, sb.mtp_s * 1e3, sb.mtp_s / sb.step_1_s);
    std::printf("  (CPU time)     decode step %.2f ms, verify %.2f ms = %.3fx, MTP draft %.2f ms = %.3fx\n",
                sb.step_1_cpu_s * 1e3, sb.verify_cpu_s * 1e3, sb.verify_cpu_s / sb.step_1_cpu_s, sb.mtp_cpu_s * 1e3,
                sb.mtp_cpu_s / sb.step_1_cpu_s);
    std::printf("implied speedup ");
    for (double a : acceptance) std::printf(" %.2fx at acceptance %.1f;", implied_speedup(sb, draft, a), a);
    std::printf("\n");
  }
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
