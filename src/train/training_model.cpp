#include "train/training_model.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "dist/communicator.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {

// x += y over n values, spread over the threads.
void add_into(float* x, const float* y, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) { axpy(1.0f, y + begin, x + begin, end - begin); });
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr int64_t kHeadChunk = 256;  // tokens per LM-head chunk: logits never exist for the whole batch

}  // namespace

Batch share_of(const Batch& whole, int rank, int ranks) {
  const int64_t S = whole.batch, T = whole.seq_len, first = S * rank / ranks, end = S * (rank + 1) / ranks;
  Batch b;
  b.batch = end - first;
  b.seq_len = T;
  b.inputs.assign(whole.inputs.begin() + first * T, whole.inputs.begin() + end * T);
  b.targets.assign(whole.targets.begin() + first * T, whole.targets.begin() + end * T);
  b.droppable.assign(whole.droppable.begin() + first, whole.droppable.begin() + end);
  if (!whole.positions.empty()) b.positions.assign(whole.positions.begin() + first * T, whole.positions.begin() + end * T);
  b.first_sequence = whole.first_sequence + first;
  b.global_sequences = whole.global_sequences > 0 ? whole.global_sequences : S;
  b.global_targets = whole.global_targets;
  if (b.global_targets == 0)
    for (int32_t t : whole.targets) b.global_targets += t >= 0;
  return b;
}

TrainingModel::TrainingModel(TrainWeights& weights, const MoeTrainingOptions& options, const dist::ParallelLayout* layout)
    : tw_(weights), options_(options), rope_(weights.config()) {
  const Config& c = tw_.config();
  if (c.n_routed_experts > 0 && c.n_routed_experts % options_.devices != 0)
    throw Error("training: " + std::to_string(c.n_routed_experts) + " routed experts do not spread over " +
                std::to_string(options_.devices) + " devices");
  if (layout && layout->world.size() > 1) batch_group_ = &layout->world;
  if (layout && layout->expert_parallel() > 1)
    dispatcher_ = dist::make_all_to_all_dispatcher(layout->experts, c.n_routed_experts);
  else
    dispatcher_ = dist::make_local_dispatcher(c.n_routed_experts);
  require(dispatcher_->placement().first() == tw_.placement().first() &&
              dispatcher_->placement().end() == tw_.placement().end(),
          "training: the weights do not hold the routed experts this rank serves");
}

StepResult TrainingModel::run(const Batch& batch, bool training, bool backward, bool keep_token_losses) {
  const Config& c = tw_.config();
  const Weights& w = tw_.w();
  const Weights& g = tw_.g();
  const int64_t B = batch.batch, T = batch.seq_len, N = B * T, d = c.hidden_size, V = c.vocab_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  require(static_cast<int64_t>(batch.inputs.size()) == N && static_cast<int64_t>(batch.targets.size()) == N,
          "training batch: inputs/targets do not match batch × seq_len");
  for (int32_t id : batch.inputs) require(id >= 0 && id < V, "training batch: token id " + std::to_string(id) + " outside the vocabulary");
  require(batch.positions.empty() || static_cast<int64_t>(batch.positions.size()) == N,
          "training batch: positions do not match batch × seq_len");
  const int32_t* positions = batch.positions.empty() ? nullptr : batch.positions.data();

  StepResult result;
  std::vector<LayerActivations>& acts = acts_;
  acts.resize(c.num_hidden_layers);
  std::vector<float> x(N * d);
  for (int64_t n = 0; n < N; ++n) w.embed_tokens.dequantize_row(batch.inputs[n], x.data() + n * d);

  std::vector<float> block(N * d);
  const MoeContext moe{batch_group_, dispatcher_.get(), batch.first_sequence, batch.global_sequences};
  int64_t moe_layers = 0, dropped = 0, assignments = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    LayerActivations& a = acts[l];
    a.x_in = x;
    a.h_attn.resize(N * d);
    rmsnorm(x.data(), lw.input_layernorm.data(), eps, N, d, a.h_attn.data());
    auto phase_start = Clock::now();
    mla_train_forward(c, rope_, lw.self_attn, a.h_attn.data(), B, T, a.mla, block.data(), positions);
    result.seconds.attention_forward += seconds_since(phase_start);
    add_into(x.data(), block.data(), N * d);
    a.x_mid = x;
    a.h_ffn.resize(N * d);
    rmsnorm(x.data(), lw.post_attention_layernorm.data(), eps, N, d, a.h_ffn.data());
    phase_start = Clock::now();
    if (lw.is_moe) {
      MoeStats stats;
      moe_train_forward(c, options_, moe, lw.moe, a.h_ffn.data(), B, T, batch.droppable, training, a.moe, stats,
                        block.data());
      ++moe_layers;
      result.balance_loss += stats.balance_loss;
      result.expert_loss += stats.expert_loss;
      result.device_loss += stats.device_loss;
      result.comm_loss += stats.comm_loss;
      result.sequence_loss += stats.sequence_loss;
      result.objective += stats.balance_loss + options_.alpha_sequence * stats.sequence_loss;
      result.max_violation += stats.max_violation;
      result.selected.push_back(stats.selected);
      dropped += stats.dropped;
      assignments += stats.assignments;
    } else {
      mlp_train_forward(lw.mlp, a.h_ffn.data(), N, a.mlp, block.data());
    }
    result.seconds.ffn_forward += seconds_since(phase_start);
    add_into(x.data(), block.data(), N * d);
  }
  if (moe_layers) {
    result.expert_loss /= moe_layers, result.device_loss /= moe_layers, result.comm_loss /= moe_layers;
    result.sequence_loss /= moe_layers;
    result.max_violation /= moe_layers;
    result.dropped_share = assignments ? static_cast<double>(dropped) / assignments : 0.0;
  }

  // Final norm, LM head and cross-entropy, a chunk of tokens at a time.
  const auto head_start = Clock::now();
  std::vector<float> h_final(N * d), d_h_final(backward ? N * d : 0, 0.0f);
  rmsnorm(x.data(), w.norm.data(), eps, N, d, h_final.data());
  for (int32_t t : batch.targets) result.targets += t >= 0;
  if (batch.global_targets > 0) result.targets = batch.global_targets;
  require(result.targets > 0, "training batch: no targets");
  std::vector<float> logits(kHeadChunk * V);
  std::vector<double> chunk_losses(kHeadChunk);
  double loss_sum = 0.0;
  for (int64_t start = 0; start < N; start += kHeadChunk) {
    const int64_t n = std::min(kHeadChunk, N - start);
    linear_forward(h_final.data() + start * d, n, f32(w.lm_head), V, d, logits.data());
    // Per row: softmax, its loss, and d loss / d logits = (softmax - onehot) / targets.
    parallel_for(n, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* row = logits.data() + i * V;
        const int32_t target = batch.targets[start + i];
        softmax(row, V);
        if (target < 0) {
          std::fill(row, row + V, 0.0f);
          chunk_losses[i] = 0.0;
          continue;
        }
        chunk_losses[i] = -std::log(std::max(row[target], 1e-30f));
        row[target] -= 1.0f;
        for (int64_t v = 0; v < V; ++v) row[v] /= static_cast<float>(result.targets);
      }
    });
    for (int64_t i = 0; i < n; ++i) {  // in token order, whatever the thread count
      loss_sum += chunk_losses[i];
      if (keep_token_losses) result.token_losses.push_back(chunk_losses[i]);
    }
    if (backward) {
      linear_backward_weight(logits.data(), n, h_final.data() + start * d, V, d, mut(g.lm_head));
      linear_backward_input(logits.data(), n, f32(w.lm_head), V, d, d_h_final.data() + start * d, false);
    }
  }
  if (batch_group_) loss_sum = batch_group_->sum(loss_sum);
  result.loss = loss_sum / result.targets;
  result.objective += result.loss;
  if (!backward) {
    result.seconds.lm_head = seconds_since(head_start);
    return result;
  }

  // Backward through the layers.
  std::vector<float> dx(N * d, 0.0f), d_h(N * d);
  rmsnorm_backward(x.data(), w.norm.data(), eps, N, d, d_h_final.data(), dx.data(), mut(g.norm));
  result.seconds.lm_head = seconds_since(head_start);  // forward and backward of the head, final norm included
  for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l) {
    const LayerWeights& lw = w.layers[l];
    const LayerWeights& lg = g.layers[l];
    LayerActivations& a = acts[l];
    std::fill(d_h.begin(), d_h.end(), 0.0f);
    auto phase_start = Clock::now();
    if (lw.is_moe)
      moe_train_backward(c, options_, moe, lw.moe, lg.moe, a.h_ffn.data(), B, T, a.moe, dx.data(), d_h.data());
    else
      mlp_train_backward(lw.mlp, lg.mlp, a.h_ffn.data(), N, a.mlp, dx.data(), d_h.data());
    result.seconds.ffn_backward += seconds_since(phase_start);
    rmsnorm_backward(a.x_mid.data(), lw.post_attention_layernorm.data(), eps, N, d, d_h.data(), dx.data(),
                     mut(lg.post_attention_layernorm));
    std::fill(d_h.begin(), d_h.end(), 0.0f);
    phase_start = Clock::now();
    mla_train_backward(c, rope_, lw.self_attn, lg.self_attn, a.h_attn.data(), B, T, a.mla, dx.data(), d_h.data(),
                       positions);
    result.seconds.attention_backward += seconds_since(phase_start);
    rmsnorm_backward(a.x_in.data(), lw.input_layernorm.data(), eps, N, d, d_h.data(), dx.data(), mut(lg.input_layernorm));
  }
  float* d_embed = mut(g.embed_tokens);
  for (int64_t n = 0; n < N; ++n) axpy(1.0f, dx.data() + n * d, d_embed + static_cast<int64_t>(batch.inputs[n]) * d, d);
  return result;
}

}  // namespace dsv2
