#include "model/mtp.h"

#include <algorithm>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/moe.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kConcat, kResidual, kNormed, kBlockOut };

Config one_layer(const Config& config) {
  Config c = config;
  c.num_hidden_layers = 1;
  return c;
}
}  // namespace

MtpModule::MtpModule(const Model& model)
    : config_(model.config()), block_config_(one_layer(model.config())), rope_(model.config()),
      plan_(ShardPlan::whole(model.config())) {
  const Config& c = config_;
  const Checkpoint& checkpoint = model.checkpoint();
  if (!available(c))
    throw Error(checkpoint.dir() + "/config.json: num_nextn_predict_layers is 0: the model has no MTP layer to draft with");
  // A model split over ranks would need the block split too; drafting runs on rank 0 only.
  if (model.plan().split()) throw Error("--speculative mtp: not supported with a model split over ranks");
  const int64_t d = c.hidden_size, L = c.num_hidden_layers;
  const std::string p = "model.layers." + std::to_string(L) + ".";
  MtpWeights& w = weights_;
  auto bind = [&](const TensorSlot& slot) { bind_tensor(c, checkpoint, slot, w.converted); };
  visit_mtp_layer(c, 0, w.layer, bind);
  // Shared with the main model (DeepSeek-V3 §2.2); the release stores copies in the layer.
  if (checkpoint.find(p + "embed_tokens.weight"))
    bind({p + "embed_tokens.weight", {c.vocab_size, d}, &w.embed_tokens});
  else
    w.embed_tokens = model.weights().embed_tokens;
  if (checkpoint.find(p + "shared_head.head.weight"))
    bind({p + "shared_head.head.weight", {c.vocab_size, d}, &w.shared_head_head});
  else
    w.shared_head_head = model.weights().lm_head;
}

std::unique_ptr<LatentCache> MtpModule::make_cache(int64_t capacity, CacheType type) const {
  return std::make_unique<LatentCache>(block_config_, capacity, 0, type);
}

void MtpModule::forward(const float* hidden, const int32_t* next_ids, int64_t rows, LatentCache& cache,
                        AttentionPath path, float* logits, bool last_only, float* out_hidden) {
  const Config& c = config_;
  const int64_t d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  require(rows > 0, "MTP forward: no rows");
  for (int64_t i = 0; i < rows; ++i)
    require_lazy(next_ids[i] >= 0 && next_ids[i] < c.vocab_size,
                 [&] { return "MTP forward: token id " + std::to_string(next_ids[i]) + " is outside the vocabulary"; });
  require(cache.length() + rows <= cache.capacity(), "MTP forward: the MTP cache is full");
  cache.reserve(cache.length() + rows);

  // [enorm(Emb(t_{i+1})) ; hnorm(h_i)] per row, then eh_proj.
  float* concat = activations_.get(kConcat, rows * 2 * d);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = concat + i * 2 * d;
    weights_.embed_tokens.dequantize_row(next_ids[i], row);
    rmsnorm(row, weights_.layer.enorm.data(), eps, 1, d, row);
    rmsnorm(hidden + i * d, weights_.layer.hnorm.data(), eps, 1, d, row + d);
  }
  float* x = activations_.get(kResidual, rows * d);
  float* normed = activations_.get(kNormed, rows * d);
  float* block_out = activations_.get(kBlockOut, rows * d);
  matmul(concat, rows, weights_.layer.eh_proj, x);

  // The decoder block, as one layer of Model::run_layers, over the MTP cache's layer 0.
  const LayerWeights& layer = weights_.layer.block;
  spans_.assign({SequenceSpan{&cache, 0, rows}});
  rmsnorm(x, layer.input_layernorm.data(), eps, rows, d, normed);
  mla_forward(block_config_, layer.self_attn, rope_, 0, normed, rows, spans_, path, block_out, attention_scratch_, plan_);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];
  rmsnorm(x, layer.post_attention_layernorm.data(), eps, rows, d, normed);
  if (layer.is_moe)
    moe_forward(c, layer.moe, normed, rows, block_out, ffn_scratch_, plan_);
  else
    mlp_forward(layer.mlp, normed, rows, block_out, ffn_scratch_, plan_, plan_.dense_width);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += block_out[i];
  cache.set_length(cache.length() + rows);

  const int64_t first = last_only ? rows - 1 : 0;
  rmsnorm(x + first * d, weights_.layer.shared_head_norm.data(), eps, rows - first, d, normed);
  if (out_hidden) std::copy(normed, normed + (rows - first) * d, out_hidden);
  matmul(normed, rows - first, weights_.shared_head_head, logits);
}

}  // namespace dsv2
