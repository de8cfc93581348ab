// DeepSeek-V3's multi-token-prediction (MTP) module, depth 1, for drafting
// (DeepSeek-V3 §2.2; docs/FORMATS.md, "The MTP layer"). For row i:
//
//   x_i      = eh_proj · [enorm(Emb(t_{i+1})) ; hnorm(h_i)]    (embedding first)
//   y_i      = DecoderBlock(x_i)   attention over the MTP rows 0..i, in its own cache
//   logits_i = shared_head.head(shared_head.norm(y_i))         predicts t_{i+2}
//
// h_i is the main model's final hidden state at position i after model.norm
// (Model::forward's `hidden`). The weights are model.layers.<num_hidden_layers>.*
// of the checkpoint; the layer's embed_tokens and shared_head.head are copies
// of the main model's in DeepSeek's release, and the main model's are used when
// the layer does not carry them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/scratch.h"
#include "model/latent_cache.h"
#include "model/model.h"
#include "model/rope.h"

namespace dsv2 {

struct MtpWeights {
  MtpLayerWeights layer;  // enorm, hnorm, eh_proj, the decoder block, shared_head.norm
  WeightMatrix embed_tokens, shared_head_head;
  std::vector<std::vector<float>> converted;  // 1-D tensors converted to float32
};

class MtpModule {
 public:
  // Binds model.layers.<num_hidden_layers>.* of the model's checkpoint. Throws
  // Error naming the directory when the model has no MTP layer
  // (num_nextn_predict_layers 0) or a tensor is missing or malformed.
  explicit MtpModule(const Model& model);

  // True when config.json declares an MTP layer.
  static bool available(const Config& config) { return config.num_nextn_predict_layers > 0; }

  // A cache for the module's one attention layer (rows are MTP rows, i.e. positions).
  std::unique_ptr<LatentCache> make_cache(int64_t capacity, CacheType type = CacheType::kF32) const;

  // Rows i = 0..rows-1 at positions cache.length() + i: `hidden` [rows, d] the
  // main model's normalised hidden states, next_ids [rows] the tokens that
  // follow them. Appends the rows to `cache`. Writes logits [rows, vocab] (only
  // the last row's when last_only) and, when given, out_hidden: the same rows'
  // output after shared_head.norm, which the next drafting step takes as its h.
  void forward(const float* hidden, const int32_t* next_ids, int64_t rows, LatentCache& cache, AttentionPath path,
               float* logits, bool last_only = false, float* out_hidden = nullptr);

  const MtpWeights& weights() const { return weights_; }

 private:
  const Config& config_;
  Config block_config_;  // the main config with one layer: shapes the MTP cache
  MtpWeights weights_;
  Rope rope_;
  ShardPlan plan_;
  Scratch activations_, attention_scratch_, ffn_scratch_;
  std::vector<SequenceSpan> spans_;
};

}  // namespace dsv2
