// DeepSeekMoE for training: routing with the economical-training features of
// DeepSeek-V2 §3.1.3 / §2.2 (balance losses, device-limited routing through
// group_limited_greedy with one group per device, token dropping) and V3's
// aux-loss-free bias and sequence-wise balance loss; and the backward pass,
// including gradients through the gates into the router W_g.
#pragma once

#include <cstdint>
#include <vector>

#include "dist/token_dispatcher.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

struct MoeTrainingOptions {
  double alpha_expert = 0.0;    // α1: expert-level balance loss
  double alpha_device = 0.0;    // α2: device-level balance loss
  double alpha_comm = 0.0;      // α3: communication balance loss
  int64_t devices = 1;          // D: routed experts spread over D contiguous groups (the expert-parallel ranks under MPI)
  double capacity_factor = 0.0; // token dropping: per-device budget = factor × average share (0: off)
  double bias_update_speed = 0.0;  // γ of aux-loss-free balancing (0: off); needs noaux_tc
  double alpha_sequence = 0.0;  // V3 sequence-wise balance loss
};

struct MlpActivations {
  std::vector<float> gate_up;  // [n, 2·width]: each row gate·x then up·x
  std::vector<float> act;      // [n, width]: silu(gate)⊙up
};

void mlp_train_forward(const MlpWeights& w, const float* x, int64_t n, MlpActivations& a, float* out);
// out (+)= ... : adds dx into dx (accumulate) and parameter gradients into g.
void mlp_train_backward(const MlpWeights& w, const MlpWeights& g, const float* x, int64_t n, const MlpActivations& a,
                        const float* dout, float* dx);

struct MoeActivations {
  std::vector<float> scores;               // [N, E] s = softmax/sigmoid(W_g·u)
  std::vector<int32_t> chosen;             // [N, K]
  std::vector<float> gates;                // [N, K] g after normalisation and scaling
  std::vector<int32_t> routed;             // [N, K] chosen, or -1 where the assignment was dropped
  std::vector<double> balance_gradient;    // per expert: d(balance losses)/d s_{e,t} (the same for every token)
  dist::DispatchPlan plan;                 // where the tokens went
  // The routed experts held here, over the rows the dispatcher delivered:
  std::vector<std::vector<int64_t>> row_of;    // per local expert: received row of each assignment
  std::vector<std::vector<int32_t>> slot_of;   // per local expert: routing slot (0..K-1) of each assignment
  std::vector<int64_t> row_in_expert;          // [rows, K]: the assignment's place in its expert's list, -1 if none
  std::vector<std::vector<float>> inputs, outputs;  // per local expert: gathered rows, y = expert(rows)
  std::vector<MlpActivations> experts;
  std::vector<float> rows_out;                 // [rows, d]: Σ gate·y per received row
  MlpActivations shared;
};

// How an MoE layer reaches the rest of the job. The batch statistics (balance
// losses, token dropping, loads) are over the whole step's batch, summed over
// `batch_group`; the routed experts are wherever `dispatcher` sends tokens.
struct MoeContext {
  const dist::Communicator* batch_group = nullptr;  // null: this process holds the whole batch
  dist::TokenDispatcher* dispatcher = nullptr;
  int64_t first_sequence = 0;    // this process's first sequence in the step's batch
  int64_t global_sequences = 0;  // sequences in the step's batch (0: just the local ones)
};

// Over the whole step's batch (every rank gets the same values).
struct MoeStats {
  double balance_loss = 0.0;    // α1·L_expert + α2·L_device + α3·L_comm
  double expert_loss = 0.0, device_loss = 0.0, comm_loss = 0.0, sequence_loss = 0.0;
  int64_t assignments = 0, dropped = 0;
  std::vector<int64_t> selected;  // per expert, before dropping (what bias balancing uses)
  double max_violation = 0.0;     // max load / mean load − 1, after dropping
};

// u: [B·T, hidden] (this process's sequences). droppable: per sequence (B
// values), 1 if its tokens may be dropped. training = false turns dropping off
// (evaluation).
void moe_train_forward(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, const MoeWeights& w,
                       const float* u, int64_t batch, int64_t seq_len, const std::vector<uint8_t>& droppable, bool training,
                       MoeActivations& a, MoeStats& stats, float* out);

void moe_train_backward(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, const MoeWeights& w,
                        const MoeWeights& g, const float* u, int64_t batch, int64_t seq_len, MoeActivations& a,
                        const float* dout, float* du);

}  // namespace dsv2
