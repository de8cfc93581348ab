// GRPO (DeepSeekMath, Shao et al. 2024; DeepSeek-V2 §4): reinforcement
// learning from outcome rewards without a critic. Per prompt q, G completions
// o_1..o_G are sampled from the policy (runtime/rollout.h); their rewards r_i
// give advantages A_i = (r_i − mean r) / (std r + 1e-4) within the group, and
// the policy maximises
//   J = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_it·A_i, clip(ρ_it, 1−ε, 1+ε)·A_i) − β·D_it ],
//   ρ = π/π_old,  D = π_ref/π − log(π_ref/π) − 1  (π_ref: the frozen SFT model),
// averaged over the step's prompts. J is a sum of per-token functions of
// log π(o_it), so its gradient reaches the logits as c_t·(onehot − softmax)
// with c_t = ∂J/∂log π_t (grpo_coefficient), through the LM head's token
// objective (train/decoder_layer_train.h). docs/ALIGNMENT.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/batch.h"

namespace dsv2 {

struct GrpoObjectiveOptions {
  double beta = 0.04;      // KL weight β (DeepSeekMath)
  double clip_eps = 0.2;   // ε
};

// What one completion token's term of J needs besides log π(o_t) itself.
struct GrpoToken {
  float weight = 0.0f;     // 1 / (prompts · G · |o_i|): the averages over tokens, the group and the step's prompts
  float advantage = 0.0f;  // A_i
  float ref_logp = 0.0f;   // log π_ref(o_t)
  float old_logp = 0.0f;   // log π_old(o_t): the policy that sampled (μ > 1: before this step's first update)
};

// The token's term of J: weight · (min(ρA, clip(ρ)A) − β·D).
double grpo_token_value(const GrpoToken& token, float logp, const GrpoObjectiveOptions& options);
// ∂(term)/∂log π: weight · (A·ρ on the unclipped branch, else 0, + β·(π_ref/π − 1)).
float grpo_coefficient(const GrpoToken& token, float logp, const GrpoObjectiveOptions& options);
// Whether the min takes the clipped branch (its gradient is then 0):
// A > 0 and ρ > 1 + ε, or A < 0 and ρ < 1 − ε.
bool grpo_clipped(const GrpoToken& token, float logp, const GrpoObjectiveOptions& options);
// D = π_ref/π − log(π_ref/π) − 1 for one token.
double grpo_kl(float ref_logp, float logp);

// (r − mean) / (std + 1e-4) within each group of `group` consecutive rewards,
// std with Bessel's correction (torch.std, as TRL's GRPOTrainer).
std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t group);

// One prompt's completions as a training batch: row i is prompt ++ completion
// i without its last token; the targets are the completion's tokens (the rest
// -1), padded with `pad` to the longest row.
Batch completion_batch(const std::vector<int32_t>& prompt, const std::vector<std::vector<int32_t>>& completions, int32_t pad);

}  // namespace dsv2
