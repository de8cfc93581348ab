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
  kAuto,      // per call, whichever of the two takes fewer multiply-adds (choose_attention_path)
};

// Consecutive tokens of one sequence inside a batch: rows [first_row,
// first_row + tokens) of the batch, at positions cache->length() .. onwards.
// A batch may hold several sequences (continuous batching): projections run
// over all rows at once, attention over each sequence's own cache.
struct SequenceSpan {
  LatentCache* cache;
  int64_t first_row, tokens;
};

// The cheaper form for a call over these spans (before their tokens enter the
// caches), counting multiply-adds: absorbing costs d_n·d_c + d_c·d_v per query
// and 2·d_c + d_R per query and visible position; expanding costs d_c·(d_n + d_v)
// per cached position and d_n + d_R + d_v per query and visible position. A
// prompt from an empty cache takes the naive form (DeepSeek-V2 Lite, 512
// tokens: 1.9× fewer), decoding and short chunks after a long cache the absorbed one.
// Absorbed also when a sequence's expanded keys and values would pass 1 GiB
// (V2-Lite: 64K positions; V2's 128 heads: 8K).
AttentionPath choose_attention_path(const Config& config, const std::vector<SequenceSpan>& spans);

// Multiply-adds per head for one (query, visible position) pair, scores and
// weighted sum: 2·d_c + d_R absorbed, d_n + d_R + d_v naive (path not kAuto).
int64_t multiply_adds_per_pair(const Config& config, AttentionPath path);

// h: [rows, hidden] (already normalised). Every token attends causally to its
// sequence's cached tokens and to those before it in its span. Its c_kv and
// k_R are written into its cache, whose rows must be reserved (the caller
// advances cache.length() once all layers ran). out: [rows, hidden].
// With a split plan, `w` holds this rank's heads and o_proj rows (shard.h):
// the rank attends with its heads and the ranks exchange the pieces of out.
void mla_forward(const Config& config, const AttentionWeights& w, const Rope& rope, int64_t layer, const float* h,
                 int64_t rows, const std::vector<SequenceSpan>& spans, AttentionPath path, float* out, Scratch& scratch,
                 const ShardPlan& plan);  // path kAuto: choose_attention_path

}  // namespace dsv2
