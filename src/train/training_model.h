// One training (or evaluation) pass over a batch of sequences: forward through
// the whole model, cross-entropy on next tokens plus the MoE balance losses,
// and (optionally) backward into TrainWeights::grads.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/parallel_layout.h"
#include "dist/token_dispatcher.h"
#include "model/rope.h"
#include "train/mla_train.h"
#include "train/moe_train.h"
#include "train/train_weights.h"

namespace dsv2 {

struct Batch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> inputs, targets;  // [batch, seq_len] each; target -1 = ignored
  std::vector<uint8_t> droppable;        // per sequence: may its tokens be dropped (token dropping)
  // [batch, seq_len] RoPE position of each token, or empty for 0..seq_len-1 in
  // every sequence. Packed SFT sequences restart at 0 with each conversation,
  // which also confines attention to it (mla_train.h).
  std::vector<int32_t> positions;
  // This process's place in the step's whole batch (data parallelism): its
  // first sequence, and the sequences and counted targets of the whole batch
  // (0: this batch is the whole batch).
  int64_t first_sequence = 0, global_sequences = 0, global_targets = 0;
};

// Rank `rank` of `ranks`'s share of a batch: sequences [S·rank/ranks, S·(rank+1)/ranks).
Batch share_of(const Batch& whole, int rank, int ranks);

// Wall-clock seconds of a step's phases (the metrics log's "seconds" field).
struct PhaseSeconds {
  double attention_forward = 0.0, attention_backward = 0.0;  // MLA, all layers
  double ffn_forward = 0.0, ffn_backward = 0.0;              // dense MLPs and MoE (router, experts)
  double lm_head = 0.0;  // final norm, LM head and cross-entropy, forward and backward
};

// Over the step's whole batch (the same on every rank).
struct StepResult {
  double loss = 0.0;          // mean cross-entropy over counted targets (nats)
  double objective = 0.0;     // what backward differentiates: loss + balance losses + α_seq·sequence losses
  double balance_loss = 0.0;  // Σ over MoE layers of α1·L_exp + α2·L_dev + α3·L_comm
  double expert_loss = 0.0, device_loss = 0.0, comm_loss = 0.0, sequence_loss = 0.0;  // unweighted, mean over layers
  double max_violation = 0.0;  // mean over MoE layers
  double dropped_share = 0.0;
  int64_t targets = 0;
  std::vector<std::vector<int64_t>> selected;  // per MoE layer (in layer order), per expert
  std::vector<double> token_losses;            // per target of this process's share (when asked), in nats
  PhaseSeconds seconds;
};

// What the forward pass keeps of one layer for the backward pass.
struct LayerActivations {
  std::vector<float> x_in, h_attn, x_mid, h_ffn;  // residual in, normed, residual after attention, normed
  MlaActivations mla;
  MlpActivations mlp;
  MoeActivations moe;
};

class TrainingModel {
 public:
  // `layout`: the job this process trains in (null: it trains alone). Batch
  // statistics are summed over its ranks, and tokens reach the routed experts
  // through its expert-parallel group. Must outlive the model.
  TrainingModel(TrainWeights& weights, const MoeTrainingOptions& options, const dist::ParallelLayout* layout = nullptr);

  // training: token dropping on. backward: accumulate gradients of
  // loss + balance_loss + α_seq·sequence_loss into weights.grads.
  StepResult run(const Batch& batch, bool training, bool backward, bool keep_token_losses = false);

 private:
  TrainWeights& tw_;
  MoeTrainingOptions options_;
  const dist::Communicator* batch_group_ = nullptr;
  std::unique_ptr<dist::TokenDispatcher> dispatcher_;
  Rope rope_;
  // Kept from step to step: the buffers (hundreds of MB for the attention
  // probabilities) are reused instead of being freed and faulted in again.
  std::vector<LayerActivations> acts_;
};

}  // namespace dsv2
