// DeepSeekMoE routing: which k routed experts each token uses, and with what
// gate weights. Every topk_method of DeepSeek-V2/V3 lives here.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace dsv2 {

// logits: [tokens, n_routed_experts] = u·W_gᵀ. bias: e_score_correction_bias
// (noaux_tc) or nullptr. Writes experts[tokens·k] and weights[tokens·k], each
// token's experts in descending order of selection score.
void route_tokens(const Config& config, const float* logits, const float* bias, int64_t tokens, int32_t* experts,
                  float* weights);

}  // namespace dsv2
