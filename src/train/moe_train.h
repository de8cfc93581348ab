// DeepSeekMoE for training: routing with the economical-training features of
// DeepSeek-V2 §3.1.3 / §2.2 (balance losses, device-limited routing through
// group_limited_greedy with one group per device, token dropping) and V3's
// aux-loss-free bias and sequence-wise balance loss; and the backward pass,
// including gradients through the gates into the router W_g.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

struct MoeTrainingOptions {
  double alpha_expert = 0.0;    // α1: expert-level balance loss
  double alpha_device = 0.0;    // α2: device-level balance loss
  double alpha_comm = 0.0;      // α3: communication balance loss
  int64_t devices = 1;          // D: routed experts spread over D contiguous groups
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
  std::vector<uint8_t> kept;               // [N, K] 0 where the assignment was dropped
  std::vector<std::vector<int64_t>> token_of;  // per expert: token of each assignment
  std::vector<std::vector<int32_t>> slot_of;   // per expert: k of each assignment
  std::vector<int64_t> row_in_expert;          // [N, K]: the assignment's row in its expert's list, -1 if dropped
  std::vector<std::vector<float>> inputs, outputs;  // per expert: gathered u, y = expert(u)
  std::vector<MlpActivations> experts;
  MlpActivations shared;
};

struct MoeStats {
  double balance_loss = 0.0;    // α1·L_expert + α2·L_device + α3·L_comm
  double expert_loss = 0.0, device_loss = 0.0, comm_loss = 0.0, sequence_loss = 0.0;
  int64_t assignments = 0, dropped = 0;
  std::vector<int64_t> selected;  // per expert, before dropping (what bias balancing uses)
  double max_violation = 0.0;     // max load / mean load − 1, after dropping
};

// u: [B·T, hidden]. droppable: per sequence (B values), 1 if its tokens may be dropped.
// training = false turns dropping off (evaluation).
void moe_train_forward(const Config& c, const MoeTrainingOptions& o, const MoeWeights& w, const float* u, int64_t batch,
                       int64_t seq_len, const std::vector<uint8_t>& droppable, bool training, MoeActivations& a,
                       MoeStats& stats, float* out);

void moe_train_backward(const Config& c, const MoeTrainingOptions& o, const MoeWeights& w, const MoeWeights& g,
                        const float* u, int64_t batch, int64_t seq_len, const MoeActivations& a, const float* dout,
                        float* du);

}  // namespace dsv2
