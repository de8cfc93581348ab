// Expert parallelism's token exchange: each token's hidden row travels to the
// ranks that hold its chosen routed experts, those experts run on the rows they
// received, and their gate-weighted outputs travel back; the backward pass
// sends output gradients the same way and input gradients back.
//
// A token goes once to each rank that holds at least one of its experts (not
// once per expert): with device-limited routing that is at most M ranks, which
// is what DeepSeek-V2's M bounds. The receiving rank adds the weighted outputs
// of all its experts for the token, so one row comes back per (token, rank).
//
// Two implementations behind one interface: the local one (all experts in this
// process; the "rows received" are the tokens themselves, nothing is copied)
// and the all-to-all one over an expert-parallel group of ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "dist/expert_placement.h"

namespace dsv2::dist {

// The rows this rank's experts work on, each with the token's k routing slots:
// slot j names a routed expert (global index) held here, or -1 (an expert held
// elsewhere, or a dropped assignment).
struct ExpertRows {
  int64_t rows = 0, k = 0, d = 0;
  const float* x = nullptr;
  int64_t x_stride = 0;
  const int32_t* experts = nullptr;
  const float* gates = nullptr;
  int64_t slot_stride = 0;

  const float* row(int64_t i) const { return x + i * x_stride; }
  int32_t expert(int64_t i, int64_t j) const { return experts[i * slot_stride + j]; }
  float gate(int64_t i, int64_t j) const { return gates[i * slot_stride + j]; }
};

// What one MoE layer's forward exchange leaves for its backward exchange.
struct DispatchPlan {
  int64_t tokens = 0, k = 0, d = 0;
  const int32_t* source_experts = nullptr;  // the caller's experts[tokens·k]
  const float* dout = nullptr;              // the caller's output gradient (local dispatcher)
  std::vector<int64_t> send_rows, recv_rows;  // per rank of the group
  std::vector<int64_t> sent_token;            // the local token of each sent row, grouped by destination rank
  // Packed rows (all-to-all only; kept from step to step for their capacity):
  std::vector<float> send;     // outgoing rows
  std::vector<float> recv;     // received [x | k expert ids | k gates] rows, read again by the backward pass
  std::vector<float> grad_in;  // received output-gradient rows
  std::vector<float> back;     // rows returned to this rank
  ExpertRows received;
  Request in_flight;
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  virtual const ExpertPlacement& placement() const = 0;

  // Forward, in two halves so that the caller can compute the shared experts
  // while rows are in flight. experts[t·k + j]: the routed expert of token t's
  // slot j, -1 for a dropped assignment; gates likewise. u, experts and gates
  // must stay valid until the backward pass is done with `plan`.
  virtual void start_dispatch(const float* u, int64_t tokens, int64_t d, const int32_t* experts, const float* gates,
                              int64_t k, DispatchPlan& plan) = 0;
  virtual const ExpertRows& finish_dispatch(DispatchPlan& plan) = 0;
  // out[t] += the rows computed for token t (one per rank it went to, in rank order).
  virtual void combine(DispatchPlan& plan, const float* rows_out, float* out) = 0;

  // Backward: d loss / d out of each token goes where the token went...
  virtual void start_dispatch_gradient(DispatchPlan& plan, const float* dout) = 0;
  virtual const float* finish_dispatch_gradient(DispatchPlan& plan) = 0;  // [rows, d], aligned with the ExpertRows
  // ...and comes back as du[t] += the input-gradient rows (rank order), and
  // d_gates[t·k + j] = the gate gradient the slot's expert computed (0 where dropped).
  virtual void combine_gradient(DispatchPlan& plan, const float* d_rows, const float* d_gate_rows, float* du,
                                float* d_gates) = 0;
};

std::unique_ptr<TokenDispatcher> make_local_dispatcher(int64_t routed_experts);
std::unique_ptr<TokenDispatcher> make_all_to_all_dispatcher(const Communicator& expert_group, int64_t routed_experts);

}  // namespace dsv2::dist
