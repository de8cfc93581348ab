// One training (or evaluation) pass over a batch of sequences: forward through
// the whole model, cross-entropy on next tokens plus the MoE balance losses and,
// when the config has MTP modules, the multi-token-prediction loss
// (train/mtp_train.h); and (optionally) backward into TrainWeights::grads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dist/parallel_layout.h"
#include "dist/token_dispatcher.h"
#include "model/rope.h"
#include "train/batch.h"
#include "train/decoder_layer_train.h"
#include "train/mtp_train.h"
#include "train/train_weights.h"

namespace dsv2 {

// Over the step's whole batch (the same on every rank).
struct StepResult {
  double loss = 0.0;          // mean cross-entropy over counted targets (nats)
  double objective = 0.0;     // what backward differentiates: loss + balance losses + α_seq·sequence losses + λ·mtp_loss
  double mtp_loss = 0.0;      // mean over the MTP modules of their cross-entropy (computed with backward only)
  double balance_loss = 0.0;  // Σ over MoE layers of α1·L_exp + α2·L_dev + α3·L_comm
  double expert_loss = 0.0, device_loss = 0.0, comm_loss = 0.0, sequence_loss = 0.0;  // unweighted, mean over layers
  double max_violation = 0.0;  // mean over MoE layers
  double dropped_share = 0.0;
  int64_t targets = 0;
  std::vector<std::vector<int64_t>> selected;  // per MoE layer (in layer order, MTP blocks last), per expert
  std::vector<double> token_losses;            // per target of this process's share (when asked), in nats
  std::vector<float> token_logprobs;           // with a token objective: log π(target) per row of the batch (0: no target)
  PhaseSeconds seconds;
};

// The MoE layers' statistics of a pass, summed into a StepResult.
struct MoeTally {
  int64_t layers = 0, dropped = 0, assignments = 0;
  void add(StepResult& result, const MoeStats& stats, double alpha_sequence);
  void finish(StepResult& result) const;  // the means over the layers
};

class TrainingModel {
 public:
  // `layout`: the job this process trains in (null: it trains alone). Batch
  // statistics are summed over its ranks, and tokens reach the routed experts
  // through its expert-parallel group. Must outlive the model.
  TrainingModel(TrainWeights& weights, const MoeTrainingOptions& options, const dist::ParallelLayout* layout = nullptr);

  // training: token dropping on. backward: accumulate gradients of the
  // objective into weights.grads (the MTP modules run with backward only).
  StepResult run(const Batch& batch, bool training, bool backward, bool keep_token_losses = false);

  // The final hidden states' own objective instead of the LM head's
  // cross-entropy (a reward model's score, train/reward_data.h): `head` gets h
  // [B·T, d], the states after model.norm, and returns the objective's value; with
  // backward it also writes d objective / d h into d_h (zeroed, [B·T, d]),
  // which is then taken back through the layers into weights.grads. loss is
  // head's value; objective adds the MoE balance losses. MTP modules do not run.
  using HiddenHead = std::function<double(const float* h, float* d_h)>;
  StepResult run_hidden(const Batch& batch, bool training, bool backward, const HiddenHead& head);

  // λ, the MTP loss's weight in the objective (the trainer follows MtpLambda).
  void set_mtp_lambda(double lambda) { mtp_lambda_ = lambda; }
  // Backward reaches only the MTP modules: the model, its embedding and head
  // included, is fixed (an MTP module trained on a frozen model).
  void set_freeze_model(bool freeze) { freeze_model_ = freeze; }
  // Instead of next-token cross-entropy, the head computes each target's
  // log-probability and backward differentiates −J for this objective
  // (GRPO, train/grpo.h); null: cross-entropy again. Must outlive the runs;
  // `loss` is then 0 and the objective's value is the caller's to compute.
  void set_token_objective(const TokenObjective* objective) { objective_ = objective; }

 private:
  TrainWeights& tw_;
  MoeTrainingOptions options_;
  const dist::Communicator* batch_group_ = nullptr;
  std::unique_ptr<dist::TokenDispatcher> dispatcher_;
  Rope rope_;
  // Kept from step to step: the buffers (hundreds of MB for the attention
  // probabilities) are reused instead of being freed and faulted in again.
  std::vector<LayerActivations> acts_;
  std::vector<MtpDepthActivations> mtp_acts_;
  double mtp_lambda_ = 0.3;
  bool freeze_model_ = false;
  const TokenObjective* objective_ = nullptr;

  // run's and run_hidden's common pass: embedding, layers, final norm; `head`
  // then adds the objective on h_final [B·T, d] into the result and, when the
  // model takes gradients, writes d objective / d h_final (else d_h_final is
  // null); then back through the model into weights.grads.
  using PassHead = std::function<void(const LayerContext& ctx, const float* h_final, float* d_h_final,
                                      StepResult& result, MoeTally& tally)>;
  StepResult pass(const Batch& batch, bool training, bool model_backward, const PassHead& head);
};

}  // namespace dsv2
