#include "runtime/benchmark.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace dsv2 {

namespace {

using Clock = std::chrono::steady_clock;

// Σ measure(W) over the matrices of a layer's FFN one token passes through:
// the dense MLP, or router + shared experts + k/n of the routed ones.
// measure is bytes as stored (decoding) or rows·cols (multiply-adds).
template <class Measure>
double ffn_sum(const Config& c, const LayerWeights& layer, const Measure& measure) {
  const auto mlp = [&](const MlpWeights& m) { return measure(m.gate_proj) + measure(m.up_proj) + measure(m.down_proj); };
  if (!layer.is_moe) return mlp(layer.mlp);
  double routed = 0.0;
  for (const MlpWeights& e : layer.moe.experts) routed += mlp(e);
  return measure(layer.moe.gate) + mlp(layer.moe.shared_experts) +
         routed / static_cast<double>(c.n_routed_experts) * static_cast<double>(c.num_experts_per_tok);
}

// The same over every transformer layer, attention and FFN.
template <class Measure>
double per_token_layer_sum(const Model& model, const Measure& measure) {
  double sum = 0.0;
  for (const LayerWeights& layer : model.weights().layers) {
    const AttentionWeights& a = layer.self_attn;
    for (const WeightMatrix* m : {&a.q_proj, &a.q_a_proj, &a.q_b_proj, &a.kv_a_proj_with_mqa, &a.kv_b_proj, &a.o_proj})
      sum += measure(*m);
    sum += ffn_sum(model.config(), layer, measure);
  }
  return sum;
}

double stored_bytes(const WeightMatrix& m) { return static_cast<double>(m.bytes()); }
double elements(const WeightMatrix& m) { return static_cast<double>(m.rows) * static_cast<double>(m.cols); }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

DecodeBytes decode_bytes_per_token(const Model& model, int64_t context, CacheType cache_type) {
  const Config& c = model.config();
  const Weights& w = model.weights();
  DecodeBytes b;
  b.weights = stored_bytes(w.embed_tokens) / static_cast<double>(c.vocab_size)  // one row
              + stored_bytes(w.lm_head) + per_token_layer_sum(model, stored_bytes);
  b.cache = static_cast<double>(LatentCache::bytes_per_token(c, cache_type)) * static_cast<double>(context);
  return b;
}

double prefill_flops(const Model& model, int64_t prompt, AttentionPath path) {
  const Config& c = model.config();
  // kv_b_proj counts once: absorbed attention folds W_UK into the query and
  // W_UV into the output, naive attention expands each position once.
  const double per_token = per_token_layer_sum(model, elements);
  // Only the last token's logits are read, so the last layer's FFN runs for it alone (Model::forward).
  const double last_ffn = ffn_sum(c, model.weights().layers.back(), elements);
  const double p = static_cast<double>(prompt);
  const double attention = static_cast<double>(c.num_hidden_layers * c.num_attention_heads) *
                           static_cast<double>(multiply_adds_per_pair(c, path)) * p * (p + 1.0) / 2.0;
  return 2.0 * (per_token * p - last_ffn * (p - 1.0) + elements(model.weights().lm_head) + attention);
}

double measure_read_bandwidth(int64_t bytes) {
  const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
  std::vector<float> data(static_cast<size_t>(n));
  parallel_for(n, 1 << 16, [&](int64_t begin, int64_t end) {  // first touch by the threads that read
    for (int64_t i = begin; i < end; ++i) data[i] = static_cast<float>(i & 7);
  });
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<float> partial(static_cast<size_t>(std::max(1, num_threads())) * 16, 0.0f);
    const auto start = Clock::now();
    parallel_for(n, 1 << 16, [&](int64_t begin, int64_t end) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
      int64_t i = begin;
      for (; i + 8 <= end; i += 8) {
        s0 += data[i], s1 += data[i + 1], s2 += data[i + 2], s3 += data[i + 3];
        s4 += data[i + 4], s5 += data[i + 5], s6 += data[i + 6], s7 += data[i + 7];
      }
      for (; i < end; ++i) s0 += data[i];
      partial[thread_index() * 16] += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    });
    best = std::max(best, static_cast<double>(bytes) / seconds_since(start));
    for (float p : partial) sink = sink + p;
  }
  return best;
}

BenchResult run_benchmark(Model& model, const BenchOptions& o) {
  const Config& c = model.config();
  require(o.prompt >= 1 && o.generate >= 1, "bench: --prompt and --gen must be at least 1");
  const int64_t context = std::max(o.context, o.prompt);
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> ids(static_cast<size_t>(context + o.generate));
  for (auto& id : ids) id = token(rng);

  LatentCache cache(c, context + o.generate, 0, o.cache_type);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  BenchResult r;
  r.prompt_tokens = o.prompt;
  r.generated_tokens = o.generate;
  r.context = context;

  r.prefill_path = o.prefill_path != AttentionPath::kAuto ? o.prefill_path
                                                            : choose_attention_path(c, {SequenceSpan{&cache, 0, o.prompt}});
  if (o.warmup) {
    LatentCache warm(c, o.prompt, 0, o.cache_type);
    model.forward(ids.data(), o.prompt, warm, r.prefill_path, logits.data(), true);
  }
  auto start = Clock::now();
  model.forward(ids.data(), o.prompt, cache, r.prefill_path, logits.data(), true);
  const double prefill_seconds = seconds_since(start);
  r.prefill_tokens_per_s = static_cast<double>(o.prompt) / prefill_seconds;
  r.prefill_flops_per_s = prefill_flops(model, o.prompt, r.prefill_path) / prefill_seconds;
  // Cached positions past the prompt hold random latents: attention costs the
  // same whatever the values, and running a large model over thousands of
  // tokens first would take far longer than the measurement.
  model.fill_random_latents(cache, o.prompt, context, rng());
  const std::vector<Model::RankReport> before = model.rank_reports();
  std::vector<double> times;
  for (int64_t i = 0; i < o.generate; ++i) {
    start = Clock::now();
    model.forward(&ids[static_cast<size_t>(context + i)], 1, cache, AttentionPath::kAbsorbed, logits.data(), true);
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  r.decode_tokens_per_s = 1.0 / times[times.size() / 2];
  const std::vector<Model::RankReport> after = model.rank_reports();
  int64_t exchanged = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    exchanged += after[i].bytes_sent - before[i].bytes_sent;
    const int64_t calls = after[i].experts.layer_calls - before[i].experts.layer_calls;
    r.rank_expert_skip_share.push_back(calls ? double(after[i].experts.skipped - before[i].experts.skipped) / calls : 0.0);
    r.rank_peak_rss_bytes.push_back(after[i].peak_rss_bytes);
  }
  r.exchange_bytes_per_token = static_cast<double>(exchanged) / static_cast<double>(o.generate);

  rusage usage{};  // before the bandwidth probe, whose buffer is not the model's
  getrusage(RUSAGE_SELF, &usage);
  r.peak_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  r.bandwidth_bytes_per_s = measure_read_bandwidth();
  r.bytes_per_token = decode_bytes_per_token(model, context + o.generate / 2, o.cache_type);
  r.roofline_tokens_per_s = r.bandwidth_bytes_per_s / r.bytes_per_token.total();
  r.roofline_share = r.decode_tokens_per_s / r.roofline_tokens_per_s;
  return r;
}

}  // namespace dsv2
