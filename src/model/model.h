// A DeepSeek-V2/V3 transformer loaded from a Hugging Face model directory.
//   x = embed(ids)
//   per layer:  x += MLA(RMSNorm(x));  x += FFN(RMSNorm(x))   (FFN: dense MLP or DeepSeekMoE)
//   logits = lm_head(RMSNorm(x))
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/scratch.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/latent_cache.h"
#include "model/mla.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv2 {

class Model {
 public:
  // Throws Error naming the file and field at fault. With `quantize_to`, the
  // weights are re-encoded in memory at load time as `dsv2 quantize --type`
  // would store them (model/convert.h).
  explicit Model(const std::string& dir, std::optional<DType> quantize_to = std::nullopt);

  const Config& config() const { return config_; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }
  const Weights& weights() const { return weights_; }

  // Runs `tokens` ids at positions cache.length()..; appends their latents to
  // the cache and advances it. Writes logits [tokens, vocab_size], or only the
  // last token's row when last_only.
  void forward(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
               bool last_only = false);

  // One step for several sequences at once (continuous batching): each chunk
  // is some tokens of one sequence with its own cache. Weights are read once
  // for all of them. Writes one logits row per chunk, for its last token.
  struct Chunk {
    const int32_t* ids;
    int64_t tokens;
    LatentCache* cache;
  };
  void forward_batch(const std::vector<Chunk>& chunks, AttentionPath path, float* logits);

 private:
  Config config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  Weights weights_;
  std::vector<std::vector<std::byte>> quantized_;  // weights re-encoded at load time
  Rope rope_;
  Scratch activations_, attention_scratch_, ffn_scratch_;
  std::vector<int32_t> batch_ids_;
  std::vector<SequenceSpan> spans_;

  // Runs the layers over rows of batch_ids_ grouped in spans_; leaves the final
  // hidden states in the residual slot and advances every cache.
  float* run_layers(AttentionPath path);
};

}  // namespace dsv2
