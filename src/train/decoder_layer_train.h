// One decoder layer in training (pre-norm: x += MLA(norm(x)); x += FFN(norm(x)),
// the FFN dense or MoE) and the LM head's cross-entropy, forward and backward.
// The main model's layers and the MTP modules' blocks (train/mtp_train.h) share
// them.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"
#include "train/mla_train.h"
#include "train/moe_train.h"

namespace dsv2 {

// Wall-clock seconds of a step's phases (the metrics log's "seconds" field).
struct PhaseSeconds {
  double attention_forward = 0.0, attention_backward = 0.0;  // MLA, all layers
  double ffn_forward = 0.0, ffn_backward = 0.0;              // dense MLPs and MoE (router, experts)
  double lm_head = 0.0;  // final norm, LM head and cross-entropy, forward and backward
};

// What the forward pass keeps of one layer for the backward pass.
struct LayerActivations {
  std::vector<float> x_in, h_attn, x_mid, h_ffn;  // residual in, normed, residual after attention, normed
  MlaActivations mla;
  MlpActivations mlp;
  MoeActivations moe;
};

// What one layer's forward and backward need besides its weights.
struct LayerContext {
  const Config& config;
  const Rope& rope;
  const MoeTrainingOptions& options;
  const MoeContext& moe;
  int64_t batch, seq_len;  // x holds batch × seq_len rows
  const std::vector<uint8_t>& droppable;  // per sequence (token dropping)
  bool training;
  const int32_t* positions = nullptr;  // [B·T] RoPE positions of packed documents (Batch::positions), or null
};

// x [B·T, d] in place: x += MLA(norm(x)); x += FFN(norm(x)). `block` is scratch
// of the same size. MoE layers fill `stats`.
void decoder_layer_train_forward(const LayerContext& ctx, const LayerWeights& w, float* x, float* block,
                                 LayerActivations& a, MoeStats& stats, PhaseSeconds& seconds);

// dx [B·T, d] in place: the gradient at the layer's output becomes the one at
// its input; parameter gradients are added into g. d_h is scratch of x's size.
void decoder_layer_train_backward(const LayerContext& ctx, const LayerWeights& w, const LayerWeights& g,
                                  LayerActivations& a, float* dx, float* d_h, PhaseSeconds& seconds);

// Cross-entropy of head(h) against targets over n rows (target -1: not counted),
// a chunk of rows at a time (logits never exist for all rows). With a
// gradient: d(grad_scale · Σ losses) is written into d_h and added into g_head
// (d_h null: no backward; g_head null: the head is frozen). Returns Σ of the counted
// rows' losses; appends each row's loss to token_losses when given.
double head_cross_entropy(const float* h, const int32_t* targets, int64_t n, int64_t d, int64_t vocab,
                          const float* head, float* g_head, float grad_scale, float* d_h,
                          std::vector<double>* token_losses);

// A sum over tokens of functions of each token's log-probability (GRPO's
// objective, train/grpo.h): given a row and log π(target) there, returns
// d J / d log π(target) for that row. Called from several threads at once.
using TokenObjective = std::function<float(int64_t row, float logp)>;

// log π(target | row) of head(h) into logp[0, n) (0 for target -1). With a
// gradient (d_h given): d(−J) for the objective J is written into d_h and
// added into g_head (null: the head is frozen), a chunk of rows at a time
// like head_cross_entropy.
void head_token_objective(const float* h, const int32_t* targets, int64_t n, int64_t d, int64_t vocab,
                          const float* head, float* g_head, float* d_h, const TokenObjective& objective, float* logp);

}  // namespace dsv2
