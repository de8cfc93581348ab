// Feed-forward blocks: the dense SwiGLU MLP and the DeepSeekMoE layer.
#pragma once

#include <cstdint>

#include "core/scratch.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

// out = down(silu(gate·x) ⊙ up·x), x: [tokens, hidden].
void mlp_forward(const MlpWeights& w, const float* x, int64_t tokens, float* out, Scratch& scratch);

// out = shared(u) + Σ_{i∈TopK} g_i·expert_i(u)   (DeepSeekMoE eq. for h'_t minus the residual)
void moe_forward(const Config& config, const MoeWeights& w, const float* u, int64_t tokens, float* out, Scratch& scratch);

}  // namespace dsv2
