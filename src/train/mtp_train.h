// DeepSeek-V3's multi-token prediction in training (§2.2): D sequential modules
// after the main model; module k (1-based) predicts the token k + 1 ahead:
//
//   h'^k_i = eh_proj_k · [enorm_k(Emb(t_{i+k})) ; hnorm_k(h^{k-1}_i)]
//   h^k    = shared_head.norm_k(Block_k(h'^k))          rows i = 0 .. T-1-k
//   L^k    = mean over counted rows of −log softmax(lm_head · h^k_i)[t_{i+k+1}]
//   L_MTP  = λ / D · Σ_k L^k
//
// h^0 is the main model's final hidden state after model.norm, and h^{k-1} of
// a later module the previous module's output after its shared_head.norm —
// what the drafting module of model/mtp.h is fed (docs/FORMATS.md, "The MTP
// layer"). The embedding and the output head are the main model's, so L_MTP
// trains them and, through h^0, the whole main model.
#pragma once

#include <cstdint>
#include <vector>

#include "train/decoder_layer_train.h"
#include "train/batch.h"

namespace dsv2 {

// V3's λ: 0.3 for the first 10T of 14.8T tokens, then 0.1.
struct MtpLambda {
  double first = 0.3, then = 0.1;
  double switch_share = 10.0 / 14.8;  // of the run's planned tokens
  double at(double token_share) const { return token_share < switch_share ? first : then; }
};

struct MtpDepthActivations {
  std::vector<int32_t> next_ids, targets;  // [B·(T−k)]: t_{i+k} and t_{i+k+1} (−1: not counted)
  std::vector<float> emb, h_prev;          // [rows, d]: the inputs of enorm and hnorm
  std::vector<float> concat;               // [rows, 2d]
  std::vector<float> x_out, h_out;         // [rows, d]: the block's output, after shared_head.norm
  std::vector<float> d_h_out;              // [rows, d]: the gradient at h_out
  LayerActivations block;
};

struct MtpResult {
  double loss = 0.0;                // mean over the modules of L^k (nats), unweighted
  std::vector<MoeStats> moe_stats;  // per module with an MoE block
};

// Forward and (when `backward`) backward of every MTP module on the batch.
// h_final: [B·T, d] the main model's rows after model.norm. d_h_final receives
// d(λ/D·Σ L^k)/d h_final (added), and the shared embedding and head their
// gradients; when it is null the main model is frozen (--freeze-model) and
// only the modules' own parameters get gradients (into g).
MtpResult mtp_train_step(const LayerContext& main_ctx, const Weights& w, const Weights& g, const Batch& batch,
                         const dist::Communicator* batch_group, const float* h_final, bool backward, float* d_h_final,
                         double lambda, std::vector<MtpDepthActivations>& acts, PhaseSeconds& seconds);

}  // namespace dsv2
