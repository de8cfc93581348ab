// Multi-head Latent Attention for training: the forward pass over whole
// sequences (K and V expanded from c_kv, as in training), keeping what the
// backward pass needs, and that backward pass. Attention itself runs in tiles
// with an online softmax (FlashAttention-2): no T×T matrix is ever kept, only
// each query's log-sum-exp, and backward recomputes the probabilities tile by
// tile, so memory grows linearly with the sequence length.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv2 {

struct MlaActivations {
  std::vector<float> c_q_raw, c_q;  // [N, q_lora_rank] before / after q_a_layernorm
  std::vector<float> q;             // [N, H·(d_n+d_R)], q_R already rotated
  std::vector<float> kv_a;          // [N, d_c+d_R] = h·W_DKVᵀ
  std::vector<float> c_kv;          // [N, d_c] after kv_a_layernorm
  std::vector<float> k_rope;        // [N, d_R] rotated
  std::vector<float> kv;            // [N, H·(d_n+d_v)] = c_kv·W_UKVᵀ
  std::vector<float> lse;           // [B, H, T] log Σ exp(scores) of each query (its softmax normaliser)
  std::vector<float> heads;         // [N, H·d_v] attention output before o_proj
  // [B, H, T, T] probabilities, kept only for sequences of one key tile
  // (T <= 256): there recomputing them in backward cost ~5% of a training
  // step, and T×T is small. Longer sequences keep none (memory linear in T).
  std::vector<float> probs;
};

// h: [B·T, hidden] (normalised input); sequences of length T are independent.
// positions: [B·T] RoPE position of each token, or null for 0..T-1 in every
// sequence. A sequence may pack several documents (SFT): position 0 starts
// one, and a token attends only to the keys of its own document (from t −
// positions[t] to t), so packed documents see exactly what they would alone.
void mla_train_forward(const Config& c, const Rope& rope, const AttentionWeights& w, const float* h, int64_t batch,
                       int64_t seq_len, MlaActivations& a, float* out, const int32_t* positions = nullptr);

// Adds the parameter gradients into `g` (views of the gradient buffer) and the
// input gradient into dh.
void mla_train_backward(const Config& c, const Rope& rope, const AttentionWeights& w, const AttentionWeights& g,
                        const float* h, int64_t batch, int64_t seq_len, const MlaActivations& a, const float* dout,
                        float* dh, const int32_t* positions = nullptr);

}  // namespace dsv2
