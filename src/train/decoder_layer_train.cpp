#include "train/decoder_layer_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/parallel.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "train/train_weights.h"

namespace dsv2 {

namespace {

// x += y over n values, spread over the threads.
void add_into(float* x, const float* y, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) { axpy(1.0f, y + begin, x + begin, end - begin); });
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr int64_t kHeadChunk = 256;  // rows per LM-head chunk

}  // namespace

void decoder_layer_train_forward(const LayerContext& ctx, const LayerWeights& w, float* x, float* block,
                                 LayerActivations& a, MoeStats& stats, PhaseSeconds& seconds) {
  const Config& c = ctx.config;
  const int64_t B = ctx.batch, T = ctx.seq_len, N = B * T, d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  a.x_in.assign(x, x + N * d);
  a.h_attn.resize(N * d);
  rmsnorm(x, w.input_layernorm.data(), eps, N, d, a.h_attn.data());
  auto phase_start = Clock::now();
  mla_train_forward(c, ctx.rope, w.self_attn, a.h_attn.data(), B, T, a.mla, block, ctx.positions);
  seconds.attention_forward += seconds_since(phase_start);
  add_into(x, block, N * d);
  a.x_mid.assign(x, x + N * d);
  a.h_ffn.resize(N * d);
  rmsnorm(x, w.post_attention_layernorm.data(), eps, N, d, a.h_ffn.data());
  phase_start = Clock::now();
  if (w.is_moe)
    moe_train_forward(c, ctx.options, ctx.moe, w.moe, a.h_ffn.data(), B, T, ctx.droppable, ctx.training, a.moe, stats,
                      block);
  else
    mlp_train_forward(w.mlp, a.h_ffn.data(), N, a.mlp, block);
  seconds.ffn_forward += seconds_since(phase_start);
  add_into(x, block, N * d);
}

void decoder_layer_train_backward(const LayerContext& ctx, const LayerWeights& w, const LayerWeights& g,
                                  LayerActivations& a, float* dx, float* d_h, PhaseSeconds& seconds) {
  const Config& c = ctx.config;
  const int64_t B = ctx.batch, T = ctx.seq_len, N = B * T, d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::fill(d_h, d_h + N * d, 0.0f);
  auto phase_start = Clock::now();
  if (w.is_moe)
    moe_train_backward(c, ctx.options, ctx.moe, w.moe, g.moe, a.h_ffn.data(), B, T, a.moe, dx, d_h);
  else
    mlp_train_backward(w.mlp, g.mlp, a.h_ffn.data(), N, a.mlp, dx, d_h);
  seconds.ffn_backward += seconds_since(phase_start);
  rmsnorm_backward(a.x_mid.data(), w.post_attention_layernorm.data(), eps, N, d, d_h, dx,
                   mut(g.post_attention_layernorm));
  std::fill(d_h, d_h + N * d, 0.0f);
  phase_start = Clock::now();
  mla_train_backward(c, ctx.rope, w.self_attn, g.self_attn, a.h_attn.data(), B, T, a.mla, dx, d_h, ctx.positions);
  seconds.attention_backward += seconds_since(phase_start);
  rmsnorm_backward(a.x_in.data(), w.input_layernorm.data(), eps, N, d, d_h, dx,
                   mut(g.input_layernorm));
}

namespace {

// The LM head over n rows, kHeadChunk rows at a time (logits never exist for
// all rows): per row with a target (>= 0), row_gradient(row, target,
// probabilities) turns softmax(head(h)) in place into d objective / d logits;
// rows without one get no gradient. The result is taken into d_h and g_head
// (d_h null: no backward; g_head null: the head is frozen).
template <typename RowGradient>
void head_chunks(const float* h, const int32_t* targets, int64_t N, int64_t d, int64_t V, const float* head,
                 float* g_head, float* d_h, const RowGradient& row_gradient) {
  std::vector<float> logits(std::min(kHeadChunk, N) * V);
  for (int64_t start = 0; start < N; start += kHeadChunk) {
    const int64_t n = std::min(kHeadChunk, N - start);
    linear_forward(h + start * d, n, head, V, d, logits.data());
    parallel_for(n, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* row = logits.data() + i * V;
        const int32_t target = targets[start + i];
        if (target < 0) {
          std::fill(row, row + V, 0.0f);
          continue;
        }
        softmax(row, V);
        row_gradient(start + i, target, row);
      }
    });
    if (d_h) {
      if (g_head) linear_backward_weight(logits.data(), n, h + start * d, V, d, g_head);
      linear_backward_input(logits.data(), n, head, V, d, d_h + start * d, false);
    }
  }
}

}  // namespace

double head_cross_entropy(const float* h, const int32_t* targets, int64_t N, int64_t d, int64_t V, const float* head,
                          float* g_head, float grad_scale, float* d_h, std::vector<double>* token_losses) {
  std::vector<double> losses(N, 0.0);
  // d loss / d logits = (softmax - onehot) · grad_scale.
  head_chunks(h, targets, N, d, V, head, g_head, d_h, [&](int64_t r, int32_t target, float* row) {
    losses[r] = -std::log(std::max(row[target], 1e-30f));
    row[target] -= 1.0f;
    for (int64_t v = 0; v < V; ++v) row[v] *= grad_scale;
  });
  double loss_sum = 0.0;
  for (int64_t r = 0; r < N; ++r) {  // in token order, whatever the thread count
    loss_sum += losses[r];
    if (token_losses) token_losses->push_back(losses[r]);
  }
  return loss_sum;
}

void head_token_objective(const float* h, const int32_t* targets, int64_t N, int64_t d, int64_t V, const float* head,
                          float* g_head, float* d_h, const TokenObjective& objective, float* logp) {
  // d J / d logits = c · (onehot − softmax) with c = d J / d log π(target); the
  // caller's objective is maximised, the trainer minimises −J.
  std::fill(logp, logp + N, 0.0f);
  head_chunks(h, targets, N, d, V, head, g_head, d_h, [&](int64_t r, int32_t target, float* row) {
    logp[r] = std::log(std::max(row[target], 1e-30f));
    if (!d_h) return;
    const float c = objective(r, logp[r]);
    for (int64_t v = 0; v < V; ++v) row[v] *= c;
    row[target] -= c;
  });
}

}  // namespace dsv2
