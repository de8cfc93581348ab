#include "model/model.h"

#include "core/error.h"
#include "model/convert.h"
#include "model/moe.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kResidual, kNormed, kBlockOut };
}

Model::Model(const std::string& dir, std::optional<DType> quantize_to)
    : config_(load_config(dir)),
      checkpoint_(std::make_unique<Checkpoint>(dir)),
      weights_(load_weights(config_, *checkpoint_)),
      rope_(config_) {
  for (const auto& file : checkpoint_->files()) file->prefault();
  if (quantize_to) quantize_weights_in_memory(config_, weights_, *quantize_to, quantized_);
}

void Model::forward(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
                    bool last_only) {
  require(tokens > 0, "forward: no tokens");
  batch_ids_.assign(ids, ids + tokens);
  spans_.assign({SequenceSpan{&cache, 0, tokens}});
  const float* x = run_layers(path);
  const int64_t d = config_.hidden_size, first = last_only ? tokens - 1 : 0;
  float* normed = activations_.get(kNormed, tokens * d);
  rmsnorm(x + first * d, weights_.norm.data(), static_cast<float>(config_.rms_norm_eps), tokens - first, d, normed);
  matmul(normed, tokens - first, weights_.lm_head, logits);
}

void Model::forward_batch(const std::vector<Chunk>& chunks, AttentionPath path, float* logits) {
  require(!chunks.empty(), "forward: no sequences");
  batch_ids_.clear();
  spans_.clear();
  for (const Chunk& c : chunks) {
    require(c.tokens > 0, "forward: a sequence with no tokens");
    for (const SequenceSpan& other : spans_) require(other.cache != c.cache, "forward: one cache used twice in a batch");
    spans_.push_back({c.cache, static_cast<int64_t>(batch_ids_.size()), c.tokens});
    batch_ids_.insert(batch_ids_.end(), c.ids, c.ids + c.tokens);
  }
  const float* x = run_layers(path);
  const int64_t d = config_.hidden_size, n = static_cast<int64_t>(spans_.size());
  float* last = activations_.get(kNormed, n * d);  // the last row of each sequence, normalised
  for (int64_t i = 0; i < n; ++i)
    rmsnorm(x + (spans_[i].first_row + spans_[i].tokens - 1) * d, weights_.norm.data(),
            static_cast<float>(config_.rms_norm_eps), 1, d, last + i * d);
  matmul(last, n, weights_.lm_head, logits);
}

float* Model::run_layers(AttentionPath path) {
  const Config& c = config_;
  const int64_t d = c.hidden_size, rows = static_cast<int64_t>(batch_ids_.size());
  for (int32_t id : batch_ids_)
    require_lazy(id >= 0 && id < c.vocab_size, [&] {
      return "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")";
    });
  for (const SequenceSpan& span : spans_) span.cache->reserve(span.cache->length() + span.tokens);

  float* x = activations_.get(kResidual, rows * d);
  float* normed = activations_.get(kNormed, rows * d);
  float* block_out = activations_.get(kBlockOut, rows * d);
  for (int64_t t = 0; t < rows; ++t) weights_.embed_tokens.dequantize_row(batch_ids_[t], x + t * d);

  const float eps = static_cast<float>(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[l];
    rmsnorm(x, layer.input_layernorm.data(), eps, rows, d, normed);
    mla_forward(c, layer.self_attn, rope_, l, normed, rows, spans_, path, block_out, attention_scratch_);
    for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];

    rmsnorm(x, layer.post_attention_layernorm.data(), eps, rows, d, normed);
    if (layer.is_moe)
      moe_forward(c, layer.moe, normed, rows, block_out, ffn_scratch_);
    else
      mlp_forward(layer.mlp, normed, rows, block_out, ffn_scratch_);
    for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];
  }
  for (const SequenceSpan& span : spans_) span.cache->set_length(span.cache->length() + span.tokens);
  return x;
}

}  // namespace dsv2
