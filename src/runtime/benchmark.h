// What `dsv2 bench` measures: prefill and decode speed of a model against the
// memory-bandwidth roofline of batch-1 decoding. Decoding one token must read
// every weight the token uses (attention, dense and shared FFNs, the router,
// its routed experts, one embedding row, the LM head) plus the whole latent
// cache; tokens/s can be at most bandwidth ÷ those bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "model/latent_cache.h"
#include "model/model.h"

namespace dsv2 {

// Bytes one decoded token reads at context length `context`: weights in their
// stored dtype (routed experts: num_experts_per_tok of the n_routed_experts,
// i.e. the average expert size times k) and the float32 latent cache.
struct DecodeBytes {
  double weights = 0.0, cache = 0.0;
  double total() const { return weights + cache; }
};
DecodeBytes decode_bytes_per_token(const Model& model, int64_t context, CacheType cache_type = CacheType::kF32);

// Floating-point operations of prefilling `prompt` tokens: 2 per weight a token
// multiplies with (routed experts: k of n on average; the LM head for the last
// token only, as generation needs; kv_b_proj once, as W_UK and W_UV folded into
// the queries and outputs or as each position's expansion), plus per head and
// visible position the scores and the weighted sum: d_c + d_R and d_c absorbed,
// d_n + d_R and d_v naive. `path`: kNaive or kAbsorbed, as the prefill ran.
double prefill_flops(const Model& model, int64_t prompt, AttentionPath path);

// Best-of-3 read bandwidth over a buffer much larger than the caches, with the
// current thread count (bytes/s).
double measure_read_bandwidth(int64_t bytes = int64_t(512) << 20);

struct BenchOptions {
  int64_t prompt = 128, generate = 32, context = 0;  // context: decode after this many cached tokens
  CacheType cache_type = CacheType::kF32;
  AttentionPath prefill_path = AttentionPath::kAuto;  // decoding is absorbed
  uint64_t seed = 1;
  // Prefill the prompt once, untimed, before the measured prefill. The first
  // prompt after loading also grows the forward's buffers (~90 MB at 512
  // tokens of V2-Lite's shape) and faults their pages in, which on a VM costs
  // 0.1-0.3 s and varies with the host; llama-bench's repetitions after its
  // first measure the same steady state.
  bool warmup = false;
};
struct BenchResult {
  int64_t prompt_tokens = 0, generated_tokens = 0, context = 0;
  double prefill_tokens_per_s = 0.0, decode_tokens_per_s = 0.0;  // decode: median per-token time
  double prefill_flops_per_s = 0.0;
  AttentionPath prefill_path = AttentionPath::kAbsorbed;  // the form the prefill took
  double bandwidth_bytes_per_s = 0.0, roofline_tokens_per_s = 0.0, roofline_share = 0.0;
  DecodeBytes bytes_per_token;
  int64_t peak_rss_bytes = 0;
  // Per rank of a split model (one entry in one process): peak RSS, and the
  // share of MoE layer steps while decoding in which no token chose an expert
  // the rank holds (it skipped its routed work). Bytes all ranks sent each
  // other per decoded token.
  std::vector<int64_t> rank_peak_rss_bytes;
  std::vector<double> rank_expert_skip_share;
  double exchange_bytes_per_token = 0.0;
};
// Prefills `prompt` random tokens (timed), fills the cache up to `context`
// with random latents (untimed; attention over them costs what it costs over
// real ones), then decodes `generate` tokens one by one (timed).
BenchResult run_benchmark(Model& model, const BenchOptions& options);

}  // namespace dsv2
