#include "runtime/rollout.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/error.h"

namespace dsv2 {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
}  // namespace

void copy_cache(const Config& config, const LatentCache& from, LatentCache& to) {
  const int64_t n = from.length(), dc = config.kv_lora_rank, dr = config.qk_rope_head_dim;
  to.reserve(n);
  std::vector<float> buffer;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const LatentCache::Rows rows = from.read(layer, 0, n, buffer);
    for (int64_t p = 0; p < n; ++p) to.store(layer, p, rows.latents + p * dc, rows.rope_keys + p * dr);
  }
  to.set_length(n);
}

std::vector<std::vector<Completion>> sample_completions(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                        const RolloutOptions& o, RolloutStats* stats) {
  const Config& c = model.config();
  const int64_t P = static_cast<int64_t>(prompts.size()), G = o.group, V = c.vocab_size;
  require(G >= 1 && o.max_new_tokens >= 1, "rollout: need a group of at least 1 and max_new_tokens >= 1");
  RolloutStats local;
  RolloutStats& s = stats ? *stats : local;
  std::vector<std::unique_ptr<LatentCache>> caches;
  std::vector<Sampler> samplers;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t length = static_cast<int64_t>(prompts[p].size());
    require(length >= 1, "rollout: an empty prompt");
    require(length + o.max_new_tokens <= c.max_position_embeddings,
            "rollout: a prompt of " + std::to_string(length) + " tokens plus " + std::to_string(o.max_new_tokens) +
                " new tokens exceeds the context of " + std::to_string(c.max_position_embeddings));
    for (int64_t i = 0; i < G; ++i) {
      caches.push_back(std::make_unique<LatentCache>(c, length + o.max_new_tokens));
      SamplingOptions sampling = o.sampling;
      sampling.seed = o.sampling.seed + static_cast<uint64_t>(p * G + i);
      samplers.emplace_back(sampling, V);
      samplers.back().add_context(prompts[p].data(), length);
    }
  }

  // Prefill: each prompt once, into its group's first cache, then copied.
  auto start = Clock::now();
  std::vector<float> prompt_logits(P * V);
  {
    std::vector<Model::Chunk> chunks;
    for (int64_t p = 0; p < P; ++p) {
      chunks.push_back({prompts[p].data(), static_cast<int64_t>(prompts[p].size()), caches[p * G].get()});
      s.prompt_tokens += static_cast<int64_t>(prompts[p].size());
    }
    model.forward_batch(chunks, AttentionPath::kAbsorbed, prompt_logits.data());
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 1; i < G; ++i) copy_cache(c, *caches[p * G], *caches[p * G + i]);
  }
  s.prefill_seconds += seconds_since(start);

  // Decode: every unfinished sequence one token per step.
  start = Clock::now();
  std::vector<std::vector<Completion>> out(P, std::vector<Completion>(G));
  std::vector<int32_t> last(P * G);
  std::vector<int64_t> active;
  auto take = [&](int64_t seq, const float* row) {
    Completion& done = out[seq / G][seq % G];
    const int32_t next = samplers[seq].sample(row);
    done.tokens.push_back(next);
    ++s.sampled_tokens;
    last[seq] = next;
    done.stopped = std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end();
    if (!done.stopped && static_cast<int64_t>(done.tokens.size()) < o.max_new_tokens) active.push_back(seq);
  };
  for (int64_t seq = 0; seq < P * G; ++seq) take(seq, prompt_logits.data() + (seq / G) * V);
  std::vector<float> logits;
  while (!active.empty()) {
    std::vector<Model::Chunk> chunks;
    for (int64_t seq : active) chunks.push_back({&last[seq], 1, caches[seq].get()});
    logits.resize(chunks.size() * V);
    model.forward_batch(chunks, AttentionPath::kAbsorbed, logits.data());
    const std::vector<int64_t> stepped = std::move(active);
    active.clear();
    for (size_t k = 0; k < stepped.size(); ++k) take(stepped[k], logits.data() + k * V);
  }
  s.decode_seconds += seconds_since(start);
  return out;
}

}  // namespace dsv2
