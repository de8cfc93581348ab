#include "dist/token_dispatcher.h"

#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace dsv2::dist {

namespace {

// Token rows per thread chunk when adding rows into tokens.
constexpr int64_t kRowGrain = 64;

// dst[token[i]] += rows[i] for the n rows of one sending rank (distinct tokens,
// so the threads never write the same row).
void add_rows(const float* rows, int64_t row_stride, const int64_t* token, int64_t n, int64_t d, float* dst) {
  parallel_for(n, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* src = rows + i * row_stride;
      float* out = dst + token[i] * d;
      for (int64_t x = 0; x < d; ++x) out[x] += src[x];
    }
  });
}

// All experts in this process: the tokens are the rows.
class LocalDispatcher final : public TokenDispatcher {
 public:
  explicit LocalDispatcher(int64_t experts) : placement_{experts, 1, 0} {}
  const ExpertPlacement& placement() const override { return placement_; }

  void start_dispatch(const float* u, int64_t tokens, int64_t d, const int32_t* experts, const float* gates, int64_t k,
                      DispatchPlan& plan) override {
    plan.tokens = tokens, plan.k = k, plan.d = d;
    plan.source_experts = experts;
    plan.received = {tokens, k, d, u, d, experts, gates, k};
  }
  const ExpertRows& finish_dispatch(DispatchPlan& plan) override { return plan.received; }

  void combine(DispatchPlan& plan, const float* rows_out, float* out) override {
    parallel_for(plan.tokens * plan.d, kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] += rows_out[i];
    });
  }

  void start_dispatch_gradient(DispatchPlan& plan, const float* dout) override { plan.dout = dout; }
  const float* finish_dispatch_gradient(DispatchPlan& plan) override { return plan.dout; }

  void combine_gradient(DispatchPlan& plan, const float* d_rows, const float* d_gate_rows, float* du,
                        float* d_gates) override {
    combine(plan, d_rows, du);
    for (int64_t i = 0; i < plan.tokens * plan.k; ++i) d_gates[i] = plan.source_experts[i] >= 0 ? d_gate_rows[i] : 0.0f;
  }

 private:
  ExpertPlacement placement_;
};

// Experts split over the ranks of `group`; rows travel by all-to-all.
// A forward row is [x (d floats) | k expert ids (int32 bits) | k gates], so that
// the receiver knows which of its experts to run and with what weight.
class AllToAllDispatcher final : public TokenDispatcher {
 public:
  AllToAllDispatcher(const Communicator& group, int64_t experts)
      : group_(group), placement_{experts, group.size(), group.rank()} {}
  const ExpertPlacement& placement() const override { return placement_; }

  void start_dispatch(const float* u, int64_t tokens, int64_t d, const int32_t* experts, const float* gates, int64_t k,
                      DispatchPlan& plan) override {
    const int ranks = group_.size();
    const int64_t width = d + 2 * k;
    plan.tokens = tokens, plan.k = k, plan.d = d;
    plan.source_experts = experts;
    plan.send_rows.assign(ranks, 0);
    plan.sent_token.clear();
    for (int r = 0; r < ranks; ++r)
      for (int64_t t = 0; t < tokens; ++t)
        if (goes_to(experts + t * k, k, r)) plan.sent_token.push_back(t), ++plan.send_rows[r];
    plan.send.resize(plan.sent_token.size() * width);
    int64_t row = 0;
    for (int r = 0; r < ranks; ++r)
      for (int64_t i = 0; i < plan.send_rows[r]; ++i, ++row) {
        const int64_t t = plan.sent_token[row];
        float* out = plan.send.data() + row * width;
        std::memcpy(out, u + t * d, d * sizeof(float));
        for (int64_t j = 0; j < k; ++j) {
          const int32_t e = experts[t * k + j];
          const int32_t here = e >= 0 && placement_.owner(e) == r ? e : -1;
          std::memcpy(out + d + j, &here, sizeof here);
          out[d + k + j] = here >= 0 ? gates[t * k + j] : 0.0f;
        }
      }
    plan.recv_rows = group_.exchange_counts(plan.send_rows);
    int64_t received = 0;
    for (int64_t n : plan.recv_rows) received += n;
    plan.recv.resize(received * width);
    plan.in_flight = group_.start_all_to_all(plan.send.data(), plan.send_rows, plan.recv.data(), plan.recv_rows,
                                             width * sizeof(float));
    plan.received = {received, k, d, plan.recv.data(), width, reinterpret_cast<const int32_t*>(plan.recv.data() + d),
                     plan.recv.data() + d + k, width};
  }

  const ExpertRows& finish_dispatch(DispatchPlan& plan) override {
    plan.in_flight.wait();
    return plan.received;
  }

  void combine(DispatchPlan& plan, const float* rows_out, float* out) override {
    const int64_t d = plan.d;
    plan.back.resize(plan.sent_token.size() * d);
    group_.start_all_to_all(rows_out, plan.recv_rows, plan.back.data(), plan.send_rows, d * sizeof(float)).wait();
    add_returned(plan, d, out);
  }

  void start_dispatch_gradient(DispatchPlan& plan, const float* dout) override {
    const int64_t d = plan.d;
    plan.send.resize(plan.sent_token.size() * d);
    parallel_for(static_cast<int64_t>(plan.sent_token.size()), kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) std::memcpy(plan.send.data() + i * d, dout + plan.sent_token[i] * d, d * sizeof(float));
    });
    plan.grad_in.resize(plan.received.rows * d);
    plan.in_flight =
        group_.start_all_to_all(plan.send.data(), plan.send_rows, plan.grad_in.data(), plan.recv_rows, d * sizeof(float));
  }

  const float* finish_dispatch_gradient(DispatchPlan& plan) override {
    plan.in_flight.wait();
    return plan.grad_in.data();
  }

  void combine_gradient(DispatchPlan& plan, const float* d_rows, const float* d_gate_rows, float* du,
                        float* d_gates) override {
    const int64_t d = plan.d, k = plan.k, width = d + k, rows = plan.received.rows;
    // Each returned row: [d input gradient | k gate gradients].
    std::vector<float>& out = plan.send;
    out.resize(rows * width);
    parallel_for(rows, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        std::memcpy(out.data() + i * width, d_rows + i * d, d * sizeof(float));
        std::memcpy(out.data() + i * width + d, d_gate_rows + i * k, k * sizeof(float));
      }
    });
    plan.back.resize(plan.sent_token.size() * width);
    group_.start_all_to_all(out.data(), plan.recv_rows, plan.back.data(), plan.send_rows, width * sizeof(float)).wait();
    add_returned(plan, width, du);
    std::fill(d_gates, d_gates + plan.tokens * k, 0.0f);
    int64_t row = 0;
    for (int r = 0; r < group_.size(); ++r)
      for (int64_t i = 0; i < plan.send_rows[r]; ++i, ++row) {
        const int64_t t = plan.sent_token[row];
        for (int64_t j = 0; j < k; ++j) {
          const int32_t e = plan.source_experts[t * k + j];
          if (e >= 0 && placement_.owner(e) == r) d_gates[t * k + j] = plan.back[row * width + d + j];
        }
      }
  }

 private:
  bool goes_to(const int32_t* slots, int64_t k, int rank) const {
    for (int64_t j = 0; j < k; ++j)
      if (slots[j] >= 0 && placement_.owner(slots[j]) == rank) return true;
    return false;
  }

  // dst[t] += the first d values of each returned row, one sending rank after another.
  void add_returned(const DispatchPlan& plan, int64_t row_stride, float* dst) const {
    int64_t row = 0;
    for (int r = 0; r < group_.size(); ++r) {
      add_rows(plan.back.data() + row * row_stride, row_stride, plan.sent_token.data() + row, plan.send_rows[r], plan.d, dst);
      row += plan.send_rows[r];
    }
  }

  Communicator group_;
  ExpertPlacement placement_;
};

}  // namespace

std::unique_ptr<TokenDispatcher> make_local_dispatcher(int64_t routed_experts) {
  return std::make_unique<LocalDispatcher>(routed_experts);
}

std::unique_ptr<TokenDispatcher> make_all_to_all_dispatcher(const Communicator& expert_group, int64_t routed_experts) {
  return std::make_unique<AllToAllDispatcher>(expert_group, routed_experts);
}

}  // namespace dsv2::dist
