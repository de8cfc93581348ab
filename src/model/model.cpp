#include "model/model.h"

#include "core/error.h"
#include "model/moe.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kResidual, kNormed, kBlockOut };
}

Model::Model(const std::string& dir)
    : config_(load_config(dir)),
      checkpoint_(std::make_unique<Checkpoint>(dir)),
      weights_(load_weights(config_, *checkpoint_)),
      rope_(config_) {}

void Model::forward(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
                    bool last_only) {
  const Config& c = config_;
  const int64_t d = c.hidden_size, start = cache.length();
  require(tokens > 0, "forward: no tokens");
  require(start + tokens <= cache.capacity(), "context full: " + std::to_string(start + tokens) +
                                                  " tokens exceed the cache capacity of " + std::to_string(cache.capacity()));
  for (int64_t t = 0; t < tokens; ++t)
    require(ids[t] >= 0 && ids[t] < c.vocab_size,
            "token id " + std::to_string(ids[t]) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");

  float* x = activations_.get(kResidual, tokens * d);
  float* normed = activations_.get(kNormed, tokens * d);
  float* block_out = activations_.get(kBlockOut, tokens * d);
  for (int64_t t = 0; t < tokens; ++t) weights_.embed_tokens.dequantize_row(ids[t], x + t * d);

  const float eps = static_cast<float>(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[l];
    rmsnorm(x, layer.input_layernorm.data(), eps, tokens, d, normed);
    mla_forward(c, layer.self_attn, rope_, l, normed, tokens, cache, path, block_out, attention_scratch_);
    for (int64_t i = 0; i < tokens * d; ++i) x[i] += block_out[i];

    rmsnorm(x, layer.post_attention_layernorm.data(), eps, tokens, d, normed);
    if (layer.is_moe)
      moe_forward(c, layer.moe, normed, tokens, block_out, ffn_scratch_);
    else
      mlp_forward(layer.mlp, normed, tokens, block_out, ffn_scratch_);
    for (int64_t i = 0; i < tokens * d; ++i) x[i] += block_out[i];
  }
  cache.set_length(start + tokens);

  const int64_t first = last_only ? tokens - 1 : 0;
  rmsnorm(x + first * d, weights_.norm.data(), eps, tokens - first, d, normed);
  matmul(normed, tokens - first, weights_.lm_head, logits);
}

}  // namespace dsv2
