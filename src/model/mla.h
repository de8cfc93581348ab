// Multi-head Latent Attention (DeepSeek-V2 §2.1).
#pragma once

#include <cstdint>

#include "core/scratch.h"
#include "model/config.h"
#include "model/latent_cache.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv2 {

enum class AttentionPath {
  kNaive,     // expand every cached c_kv into per-head k_nope and v through kv_b_proj
  kAbsorbed,  // fold W_UK into the query and W_UV into the output: K and V never exist
};

// h: [tokens, hidden] (already normalised); the tokens sit at positions
// cache.length() .. cache.length()+tokens-1 and attend causally to everything
// before them. Their c_kv and k_R are written into the cache (the caller
// advances cache.length() once all layers ran). out: [tokens, hidden].
void mla_forward(const Config& config, const AttentionWeights& w, const Rope& rope, int64_t layer, const float* h,
                 int64_t tokens, LatentCache& cache, AttentionPath path, float* out, Scratch& scratch);

}  // namespace dsv2
