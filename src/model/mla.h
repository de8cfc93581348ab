// Multi-head Latent Attention (DeepSeek-V2 §2.1).
#pragma once

#include <cstdint>
#include <vector>

#include "core/scratch.h"
#include "model/config.h"
#include "model/latent_cache.h"
#include "model/rope.h"
#include "model/shard.h"
#include "model/weights.h"

namespace dsv2 {

enum class AttentionPath {
  kNaive,     // expand every cached c_kv into per-head k_nope and v through kv_b_proj
  kAbsorbed,  // fold W_UK into the query and W_UV into the output: K and V never exist
};

// Consecutive tokens of one sequence inside a batch: rows [first_row,
// first_row + tokens) of the batch, at positions cache->length() .. onwards.
// A batch may hold several sequences (continuous batching): projections run
// over all rows at once, attention over each sequence's own cache.
struct SequenceSpan {
  LatentCache* cache;
  int64_t first_row, tokens;
};

// h: [rows, hidden] (already normalised). Every token attends causally to its
// sequence's cached tokens and to those before it in its span. Its c_kv and
// k_R are written into its cache, whose rows must be reserved (the caller
// advances cache.length() once all layers ran). out: [rows, hidden].
// With a split plan, `w` holds this rank's heads and o_proj rows (shard.h):
// the rank attends with its heads and the ranks exchange the pieces of out.
void mla_forward(const Config& config, const AttentionWeights& w, const Rope& rope, int64_t layer, const float* h,
                 int64_t rows, const std::vector<SequenceSpan>& spans, AttentionPath path, float* out, Scratch& scratch,
                 const ShardPlan& plan);

}  // namespace dsv2
