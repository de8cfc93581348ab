#include "train/training_model.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "dist/communicator.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
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

void MoeTally::add(StepResult& result, const MoeStats& stats, double alpha_sequence) {
  ++layers;
  result.balance_loss += stats.balance_loss;
  result.expert_loss += stats.expert_loss;
  result.device_loss += stats.device_loss;
  result.comm_loss += stats.comm_loss;
  result.sequence_loss += stats.sequence_loss;
  result.objective += stats.balance_loss + alpha_sequence * stats.sequence_loss;
  result.max_violation += stats.max_violation;
  result.selected.push_back(stats.selected);
  dropped += stats.dropped;
  assignments += stats.assignments;
}

void MoeTally::finish(StepResult& result) const {
  if (!layers) return;
  result.expert_loss /= layers, result.device_loss /= layers, result.comm_loss /= layers;
  result.sequence_loss /= layers;
  result.max_violation /= layers;
  result.dropped_share = assignments ? static_cast<double>(dropped) / assignments : 0.0;
}

StepResult TrainingModel::pass(const Batch& batch, bool training, bool model_backward, const PassHead& head) {
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
  // The MTP modules' shifted sequences would cross the packed documents' boundaries.
  require(batch.positions.empty() || c.num_nextn_predict_layers == 0,
          "training batch: packed documents (positions) with MTP modules are not supported");

  StepResult result;
  acts_.resize(c.num_hidden_layers);
  std::vector<float> x(N * d);
  for (int64_t n = 0; n < N; ++n) w.embed_tokens.dequantize_row(batch.inputs[n], x.data() + n * d);
  std::vector<float> block(N * d);
  const MoeContext moe{batch_group_, dispatcher_.get(), batch.first_sequence, batch.global_sequences};
  const int32_t* positions = batch.positions.empty() ? nullptr : batch.positions.data();
  const LayerContext ctx{c, rope_, options_, moe, B, T, batch.droppable, training, positions};
  MoeTally tally;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    MoeStats stats;
    decoder_layer_train_forward(ctx, w.layers[l], x.data(), block.data(), acts_[l], stats, result.seconds);
    if (w.layers[l].is_moe) tally.add(result, stats, options_.alpha_sequence);
  }

  // Final norm and the head (which times itself: the MTP modules count in their own phases).
  const auto norm_start = Clock::now();
  std::vector<float> h_final(N * d), d_h_final(model_backward ? N * d : 0, 0.0f);
  rmsnorm(x.data(), w.norm.data(), eps, N, d, h_final.data());
  result.seconds.lm_head += seconds_since(norm_start);
  head(ctx, h_final.data(), model_backward ? d_h_final.data() : nullptr, result, tally);
  tally.finish(result);
  if (!model_backward) return result;

  // Backward through the final norm, the layers and the embedding.
  const auto norm_backward_start = Clock::now();
  std::vector<float> dx(N * d, 0.0f), d_h(N * d);
  rmsnorm_backward(x.data(), w.norm.data(), eps, N, d, d_h_final.data(), dx.data(), mut(g.norm));
  result.seconds.lm_head += seconds_since(norm_backward_start);  // the head's forward and backward, final norm included
  for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l)
    decoder_layer_train_backward(ctx, w.layers[l], g.layers[l], acts_[l], dx.data(), d_h.data(), result.seconds);
  float* d_embed = mut(g.embed_tokens);
  for (int64_t n = 0; n < N; ++n) axpy(1.0f, dx.data() + n * d, d_embed + static_cast<int64_t>(batch.inputs[n]) * d, d);
  return result;
}

StepResult TrainingModel::run(const Batch& batch, bool training, bool backward, bool keep_token_losses) {
  // With the model frozen (--freeze-model) only the MTP modules take gradients.
  const bool model_backward = backward && !freeze_model_;
  return pass(batch, training, model_backward, [&](const LayerContext& ctx, const float* h_final, float* d_h_final,
                                                   StepResult& result, MoeTally& tally) {
    const Config& c = tw_.config();
    const Weights& w = tw_.w();
    const Weights& g = tw_.g();
    const int64_t N = batch.batch * batch.seq_len;
    // LM head and cross-entropy.
    const auto head_start = Clock::now();
    for (int32_t t : batch.targets) result.targets += t >= 0;
    if (batch.global_targets > 0) result.targets = batch.global_targets;
    require(result.targets > 0, "training batch: no targets");
    if (objective_) {  // GRPO: log-probabilities and the objective's gradient instead of cross-entropy
      require(!batch_group_ && c.num_nextn_predict_layers == 0, "training: a token objective runs in one process, without MTP modules");
      result.token_logprobs.resize(N);
      head_token_objective(h_final, batch.targets.data(), N, c.hidden_size, c.vocab_size, f32(w.lm_head),
                           d_h_final ? mut(g.lm_head) : nullptr, d_h_final, *objective_, result.token_logprobs.data());
    }
    double loss_sum = objective_ ? 0.0 : head_cross_entropy(h_final, batch.targets.data(), N, c.hidden_size, c.vocab_size,
                                                            f32(w.lm_head), d_h_final ? mut(g.lm_head) : nullptr,
                                                            1.0f / static_cast<float>(result.targets), d_h_final,
                                                            keep_token_losses ? &result.token_losses : nullptr);
    if (batch_group_) loss_sum = batch_group_->sum(loss_sum);
    result.loss = loss_sum / result.targets;
    result.objective += result.loss;
    result.seconds.lm_head += seconds_since(head_start);
    // The MTP modules (V3 §2.2) add their loss and, through h_final, its gradient.
    if (backward && c.num_nextn_predict_layers > 0) {
      const MtpResult mtp = mtp_train_step(ctx, w, g, batch, batch_group_, h_final, true, d_h_final, mtp_lambda_,
                                           mtp_acts_, result.seconds);
      result.mtp_loss = mtp.loss;
      result.objective += mtp_lambda_ * mtp.loss;
      for (const MoeStats& stats : mtp.moe_stats) tally.add(result, stats, options_.alpha_sequence);
    }
  });
}

StepResult TrainingModel::run_hidden(const Batch& batch, bool training, bool backward, const HiddenHead& head) {
  return pass(batch, training, backward,
              [&](const LayerContext&, const float* h_final, float* d_h_final, StepResult& result, MoeTally&) {
                const auto head_start = Clock::now();
                result.loss = head(h_final, d_h_final);
                result.objective += result.loss;
                result.seconds.lm_head += seconds_since(head_start);
              });
}

}  // namespace dsv2
