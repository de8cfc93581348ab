// Feed-forward blocks: the dense SwiGLU MLP and the DeepSeekMoE layer.
#pragma once

#include <cstdint>

#include "core/scratch.h"
#include "model/config.h"
#include "model/shard.h"
#include "model/weights.h"

namespace dsv2 {

// out = down(silu(gate·x) ⊙ up·x), x: [tokens, hidden]. With a split plan, w
// holds rows `width` of gate_proj and up_proj and rows plan.hidden of down_proj
// (shard.h), and the ranks exchange the pieces. step_rows: as matmul's (a
// routed expert passes its layer's tokens).
void mlp_forward(const MlpWeights& w, const float* x, int64_t tokens, float* out, Scratch& scratch, const ShardPlan& plan,
                 const Split& width, int64_t step_rows = 0);

// out = shared(u) + Σ_{i∈TopK} g_i·expert_i(u)   (DeepSeekMoE eq. for h'_t minus the residual)
// With a split plan each rank runs the routed experts it holds and its slice of
// the shared experts, and one sum over the ranks adds the pieces. Returns the
// number of (token, expert) assignments computed here: 0 when no token of the
// step chose an expert this rank holds (it then skips the routed work).
int64_t moe_forward(const Config& config, const MoeWeights& w, const float* u, int64_t tokens, float* out,
                    Scratch& scratch, const ShardPlan& plan);

}  // namespace dsv2
