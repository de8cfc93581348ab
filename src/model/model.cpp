#include "model/model.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "io/mapped_file.h"
#include "model/convert.h"
#include "model/moe.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/repack.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kResidual, kNormed, kBlockOut, kLogitRows };

void prefault_matrix(const WeightMatrix& m) {
  if (m.empty()) return;
  const size_t values = static_cast<size_t>(m.rows) * m.row_bytes();
  prefault_range(m.data, values);
  if (m.scale_inv) prefault_range(m.scale_inv, m.bytes() - values);
}

// Maps in the weights this rank reads: its matrices (split ones as its rows)
// and the 1-D weights. Not the embedding table: a token reads one row of it.
void prefault_share(const Config& config, Weights& w) {
  for_each_tensor(config, w, [&](const TensorSlot& slot) {
    if (slot.vector) return prefault_range(slot.vector->values, static_cast<size_t>(slot.vector->size) * sizeof(float));
    if (slot.matrix != &w.embed_tokens) prefault_matrix(*slot.matrix);
  });
  if (config.tie_word_embeddings) prefault_matrix(w.lm_head);  // this rank's rows of the shared table
}

// Moves each span's last row to the front of x, span after span (rows only
// move forward, so in place), and returns how many there are.
int64_t keep_last_rows(const std::vector<SequenceSpan>& spans, int64_t d, float* x) {
  int64_t kept = 0;
  for (const SequenceSpan& span : spans) {
    const float* row = x + (span.first_row + span.tokens - 1) * d;
    if (row != x + kept * d) std::copy(row, row + d, x + kept * d);
    ++kept;
  }
  return kept;
}

}  // namespace

Model::Model(const std::string& dir, std::optional<DType> quantize_to)
    : config_(load_config(dir)),
      checkpoint_(std::make_unique<Checkpoint>(dir)),
      weights_(load_weights(config_, *checkpoint_)),
      plan_(ShardPlan::whole(config_)),
      rope_(config_) {
  for (const auto& file : checkpoint_->files()) file->prefault();
  if (quantize_to) quantize_weights_in_memory(config_, weights_, *quantize_to, quantized_);
}

Model::Model(const std::string& dir, std::optional<DType> quantize_to, const dist::Communicator& group)
    : config_(load_config(dir)),
      checkpoint_(std::make_unique<Checkpoint>(dir)),
      weights_(load_weights(config_, *checkpoint_)),
      plan_(group.size() > 1 ? ShardPlan::make(config_, weights_, group) : ShardPlan::whole(config_)),
      rope_(config_) {
  if (!plan_.split()) {
    for (const auto& file : checkpoint_->files()) file->prefault();
  } else {
    shard_weights(config_, plan_, weights_);
    if (!quantize_to) prefault_share(config_, weights_);  // (re-encoding reads what it needs)
  }
  if (quantize_to) quantize_weights_in_memory(config_, weights_, *quantize_to, quantized_);
}

Model::Model(const Config& config, const Weights& weights)
    : config_(config), weights_(weights), plan_(ShardPlan::whole(config_)), rope_(config_) {}

int64_t Model::repack_for_prompts() {
  require(checkpoint_ != nullptr, "model: --repack needs weights loaded from a model directory");
  const auto mapped = [&](const WeightMatrix& m, size_t bytes) {
    for (const auto& file : checkpoint_->files())
      if (file->maps(m.data, bytes)) return true;
    return false;  // re-encoded at load (--quantize): its rows are this process's own memory
  };
  int64_t bytes = 0;
  for_each_tensor(config_, weights_, [&](const TensorSlot& slot) {
    WeightMatrix* m = slot.matrix;
    if (!m || m->panels || dsv2::repacked_bytes(*m) == 0) return;
    if (m == &weights_.embed_tokens || m == &weights_.lm_head || m == &weights_.score) return;
    repack_rows(*m, repacked_.emplace_back());
    bytes += static_cast<int64_t>(repacked_.back().size());
    // Rows every product now reads from the panels leave memory; the absorbed
    // attention still reads kv_b_proj's (a head's slice, combined by its query).
    const size_t rows = m->row_bytes() * static_cast<size_t>(m->rows);
    if (m->products_read_panels() && !slot.name.ends_with("kv_b_proj.weight") && mapped(*m, rows)) {
      release_range(m->data, rows);
      released_bytes_ += static_cast<int64_t>(rows);
    }
  });
  return bytes;
}

int64_t Model::repacked_bytes() const {
  int64_t bytes = 0;
  for (const auto& panels : repacked_) bytes += static_cast<int64_t>(panels.size());
  return bytes;
}

const Checkpoint& Model::checkpoint() const {
  require(checkpoint_ != nullptr, "model: the weights are not from a checkpoint");
  return *checkpoint_;
}

void Model::check_batch() const {
  for (int32_t id : batch_ids_)
    require_lazy(id >= 0 && id < config_.vocab_size, [&] {
      return "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")";
    });
  for (const SequenceSpan& span : spans_)
    require_lazy(span.cache->length() + span.tokens <= span.cache->capacity(), [&] {
      return "context full: " + std::to_string(span.cache->length() + span.tokens) +
             " tokens exceed the cache capacity of " + std::to_string(span.cache->capacity());
    });
}

void Model::forward(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
                    bool last_only, float* hidden) {
  forward_tokens(ids, tokens, cache, path, logits, last_only, hidden, last_only && !hidden);
}

void Model::forward_tokens(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
                           bool last_only, float* hidden, bool last_row_only) {
  require(tokens > 0, "forward: no tokens");
  batch_ids_.assign(ids, ids + tokens);
  spans_.assign({SequenceSpan{&cache, 0, tokens}});
  check_batch();
  if (plan_.split() && !is_follower()) announce(0, path, (last_only ? int64_t{kLastOnly} : 0) | (last_row_only ? int64_t{kLastRowsOnly} : 0));
  const float* x = run_layers(path, last_row_only);
  const int64_t d = config_.hidden_size, first = last_only ? tokens - 1 : 0;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  if (hidden) {  // every row, for the MTP module's prefill, even when only the last row's logits are wanted
    rmsnorm(x, weights_.norm.data(), eps, tokens, d, hidden);
    return lm_head(hidden + first * d, tokens - first, logits);
  }
  float* normed = activations_.get(kNormed, tokens * d);
  rmsnorm(last_row_only ? x : x + first * d, weights_.norm.data(), eps, tokens - first, d, normed);
  lm_head(normed, tokens - first, logits);
}

void Model::forward_batch(const std::vector<Chunk>& chunks, AttentionPath path, float* logits, float* hidden) {
  forward_chunks(chunks, path, logits, hidden, hidden == nullptr);
}

void Model::forward_chunks(const std::vector<Chunk>& chunks, AttentionPath path, float* logits, float* hidden,
                           bool last_rows_only) {
  require(!chunks.empty(), "forward: no sequences");
  batch_ids_.clear();
  spans_.clear();
  for (const Chunk& c : chunks) {
    require(c.tokens > 0, "forward: a sequence with no tokens");
    for (const SequenceSpan& other : spans_) require(other.cache != c.cache, "forward: one cache used twice in a batch");
    spans_.push_back({c.cache, static_cast<int64_t>(batch_ids_.size()), c.tokens});
    batch_ids_.insert(batch_ids_.end(), c.ids, c.ids + c.tokens);
  }
  check_batch();
  if (plan_.split() && !is_follower()) announce(1, path, last_rows_only ? int64_t{kLastRowsOnly} : 0);
  const float* x = run_layers(path, last_rows_only);
  const int64_t d = config_.hidden_size, n = static_cast<int64_t>(spans_.size());
  const float eps = static_cast<float>(config_.rms_norm_eps);
  float* last = activations_.get(kNormed, n * d);  // the last row of each sequence, normalised
  if (last_rows_only) {
    rmsnorm(x, weights_.norm.data(), eps, n, d, last);
    return lm_head(last, n, logits);
  }
  if (hidden) rmsnorm(x, weights_.norm.data(), eps, static_cast<int64_t>(batch_ids_.size()), d, hidden);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = spans_[i].first_row + spans_[i].tokens - 1;
    if (hidden)
      std::copy(hidden + row * d, hidden + (row + 1) * d, last + i * d);
    else
      rmsnorm(x + row * d, weights_.norm.data(), eps, 1, d, last + i * d);
  }
  lm_head(last, n, logits);
}

void Model::lm_head(const float* rows, int64_t count, float* logits) {
  if (!plan_.split()) return matmul(rows, count, weights_.lm_head, logits);
  // Each rank multiplies with its rows of the vocabulary; rank 0 gathers them.
  float* mine = activations_.get(kLogitRows, count * plan_.vocab.count(plan_.rank));
  matmul(rows, count, weights_.lm_head, mine);
  plan_.group->gather_columns(mine, count, plan_.vocab.bounds, logits, 0);
}

void Model::fill_random_latents(LatentCache& cache, int64_t begin, int64_t end, uint64_t seed) {
  require(begin >= 0 && begin <= end && end <= cache.capacity(), "fill_random_latents: positions outside the cache");
  if (plan_.split() && !is_follower()) {
    batch_ids_.clear();
    spans_.assign({SequenceSpan{&cache, 0, end - begin}});
    announce(2, AttentionPath::kAbsorbed, 0, begin, seed);  // (kFill)
  }
  fill_latents(cache, begin, end, seed);
}

void Model::fill_latents(LatentCache& cache, int64_t begin, int64_t end, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> latent(static_cast<size_t>(config_.kv_lora_rank)), rope_key(static_cast<size_t>(config_.qk_rope_head_dim));
  cache.reserve(end);
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer)
    for (int64_t position = begin; position < end; ++position) {
      for (auto& v : latent) v = normal(rng);
      for (auto& v : rope_key) v = normal(rng);
      cache.store(layer, position, latent.data(), rope_key.data());
    }
  cache.set_length(end);
}

float* Model::run_layers(AttentionPath path, bool last_rows_only) {
  const Config& c = config_;
  const int64_t d = c.hidden_size;
  int64_t rows = static_cast<int64_t>(batch_ids_.size());
  for (const SequenceSpan& span : spans_) span.cache->reserve(span.cache->length() + span.tokens);

  float* x = activations_.get(kResidual, rows * d);
  float* normed = activations_.get(kNormed, rows * d);
  float* block_out = activations_.get(kBlockOut, rows * d);
  for (int64_t t = 0; t < rows; ++t) weights_.embed_tokens.dequantize_row(batch_ids_[t], x + t * d);

  const float eps = static_cast<float>(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[l];
    rmsnorm(x, layer.input_layernorm.data(), eps, rows, d, normed);
    mla_forward(c, layer.self_attn, rope_, l, normed, rows, spans_, path, block_out, attention_scratch_, plan_);
    for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];
    if (last_rows_only && l == c.num_hidden_layers - 1) rows = keep_last_rows(spans_, d, x);

    rmsnorm(x, layer.post_attention_layernorm.data(), eps, rows, d, normed);
    if (layer.is_moe) {
      ++expert_work_.layer_calls;
      expert_work_.skipped += moe_forward(c, layer.moe, normed, rows, block_out, ffn_scratch_, plan_) == 0;
    } else {
      mlp_forward(layer.mlp, normed, rows, block_out, ffn_scratch_, plan_, plan_.dense_width);
    }
    for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];
  }
  for (const SequenceSpan& span : spans_) span.cache->set_length(span.cache->length() + span.tokens);
  return x;
}

}  // namespace dsv2
