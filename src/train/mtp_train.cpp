#include "train/mtp_train.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "dist/communicator.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "ops/kernels.h"
#include "train/train_weights.h"

namespace dsv2 {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
}  // namespace

MtpResult mtp_train_step(const LayerContext& main_ctx, const Weights& w, const Weights& g, const Batch& batch,
                         const dist::Communicator* batch_group, const float* h_final, bool backward, float* d_h_final,
                         double lambda, std::vector<MtpDepthActivations>& acts, PhaseSeconds& seconds) {
  const Config& c = main_ctx.config;
  const int64_t D = c.num_nextn_predict_layers, B = batch.batch, T = batch.seq_len, d = c.hidden_size, V = c.vocab_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const bool train_shared = backward && d_h_final;  // the embedding and head are the main model's
  require(T > D, "training: --seq-len " + std::to_string(T) + " leaves no rows for " + std::to_string(D) +
                     " MTP module(s) (it must exceed the MTP depth)");
  // Module k runs on sequences of T − k rows.
  auto context = [&](int64_t Tk) {
    return LayerContext{c, main_ctx.rope, main_ctx.options, main_ctx.moe, B, Tk, main_ctx.droppable, main_ctx.training};
  };
  MtpResult result;
  acts.resize(D);
  std::vector<int64_t> counted(D);

  // Forward, module by module; each head's gradient is taken at once (into d_h_out).
  for (int64_t k = 1; k <= D; ++k) {
    MtpDepthActivations& a = acts[k - 1];
    const MtpLayerWeights& m = w.mtp[k - 1];
    const int64_t Tk = T - k, rows = B * Tk;
    a.next_ids.resize(rows), a.targets.resize(rows);
    a.emb.resize(rows * d), a.h_prev.resize(rows * d), a.concat.resize(rows * 2 * d);
    const float* prev = k == 1 ? h_final : acts[k - 2].h_out.data();
    const int64_t prev_len = T - (k - 1);
    int64_t local = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Tk; ++i) {
        const int64_t r = b * Tk + i;
        a.next_ids[r] = batch.inputs[b * T + i + k];
        a.targets[r] = batch.targets[b * T + i + k];
        local += a.targets[r] >= 0;
        w.embed_tokens.dequantize_row(a.next_ids[r], a.emb.data() + r * d);
        std::copy_n(prev + (b * prev_len + i) * d, d, a.h_prev.data() + r * d);
      }
    counted[k - 1] = batch_group ? static_cast<int64_t>(batch_group->sum(static_cast<double>(local))) : local;
    std::vector<float> normed(rows * d);
    rmsnorm(a.emb.data(), m.enorm.data(), eps, rows, d, normed.data());
    for (int64_t r = 0; r < rows; ++r) std::copy_n(normed.data() + r * d, d, a.concat.data() + r * 2 * d);
    rmsnorm(a.h_prev.data(), m.hnorm.data(), eps, rows, d, normed.data());
    for (int64_t r = 0; r < rows; ++r) std::copy_n(normed.data() + r * d, d, a.concat.data() + r * 2 * d + d);

    a.x_out.resize(rows * d);
    linear_forward(a.concat.data(), rows, f32(m.eh_proj), d, 2 * d, a.x_out.data());
    MoeStats stats;
    std::vector<float> scratch(rows * d);
    decoder_layer_train_forward(context(Tk), m.block, a.x_out.data(), scratch.data(), a.block, stats, seconds);
    if (m.block.is_moe) result.moe_stats.push_back(stats);
    a.h_out.resize(rows * d);
    rmsnorm(a.x_out.data(), m.shared_head_norm.data(), eps, rows, d, a.h_out.data());

    const auto head_start = Clock::now();
    const float scale = counted[k - 1] > 0 ? static_cast<float>(lambda / D / counted[k - 1]) : 0.0f;
    a.d_h_out.assign(backward ? rows * d : 0, 0.0f);
    double loss_sum = head_cross_entropy(a.h_out.data(), a.targets.data(), rows, d, V, f32(w.lm_head),
                                         train_shared ? mut(g.lm_head) : nullptr, scale,
                                         backward ? a.d_h_out.data() : nullptr, nullptr);
    if (batch_group) loss_sum = batch_group->sum(loss_sum);
    if (counted[k - 1] > 0) result.loss += loss_sum / counted[k - 1] / D;
    seconds.lm_head += seconds_since(head_start);
  }
  if (!backward) return result;

  // Backward from the last module to the first: module k's input gradient
  // reaches module k−1's output (or the main model's h_final).
  for (int64_t k = D; k >= 1; --k) {
    MtpDepthActivations& a = acts[k - 1];
    const MtpLayerWeights& m = w.mtp[k - 1];
    const MtpLayerWeights& mg = g.mtp[k - 1];
    const int64_t Tk = T - k, rows = B * Tk;
    std::vector<float> dx(rows * d, 0.0f), scratch(rows * d);
    rmsnorm_backward(a.x_out.data(), m.shared_head_norm.data(), eps, rows, d, a.d_h_out.data(), dx.data(),
                     mut(mg.shared_head_norm));
    decoder_layer_train_backward(context(Tk), m.block, mg.block, a.block, dx.data(), scratch.data(), seconds);
    std::vector<float> d_concat(rows * 2 * d);
    linear_backward_weight(dx.data(), rows, a.concat.data(), d, 2 * d, mut(mg.eh_proj));
    linear_backward_input(dx.data(), rows, f32(m.eh_proj), d, 2 * d, d_concat.data(), false);
    // The two halves of the concatenation, each through its norm.
    std::vector<float> d_half(rows * d), d_in(rows * d, 0.0f);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(d_concat.data() + r * 2 * d, d, d_half.data() + r * d);
    rmsnorm_backward(a.emb.data(), m.enorm.data(), eps, rows, d, d_half.data(), d_in.data(), mut(mg.enorm));
    if (train_shared) {
      float* d_embed = mut(g.embed_tokens);
      for (int64_t r = 0; r < rows; ++r)
        axpy(1.0f, d_in.data() + r * d, d_embed + static_cast<int64_t>(a.next_ids[r]) * d, d);
    }
    for (int64_t r = 0; r < rows; ++r) std::copy_n(d_concat.data() + r * 2 * d + d, d, d_half.data() + r * d);
    std::fill(d_in.begin(), d_in.end(), 0.0f);
    rmsnorm_backward(a.h_prev.data(), m.hnorm.data(), eps, rows, d, d_half.data(), d_in.data(), mut(mg.hnorm));
    float* d_prev = k == 1 ? d_h_final : acts[k - 2].d_h_out.data();
    if (!d_prev) break;  // the frozen main model takes no gradient
    const int64_t prev_len = T - (k - 1);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Tk; ++i) axpy(1.0f, d_in.data() + (b * Tk + i) * d, d_prev + (b * prev_len + i) * d, d);
  }
  return result;
}

}  // namespace dsv2
