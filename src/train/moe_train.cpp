#include "train/moe_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "dist/communicator.h"
#include "model/router.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "train/train_weights.h"

namespace dsv2 {

namespace {

// W_gate and W_up of a training MLP, stacked: [W_gate; W_up] is one
// [2·width, d] matrix (TrainWeights lays the two out back to back), so that
// both products with x are one GEMM twice as wide.
const float* stacked_gate_up(const MlpWeights& w) {
  const float* gate = f32(w.gate_proj);
  require(f32(w.up_proj) == gate + w.gate_proj.rows * w.gate_proj.cols,
          "training weights: up_proj does not follow gate_proj in memory");
  return gate;
}

// Rows of `n` tokens per thread chunk for a row loop over `width` values.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, kElementwiseGrain / width); }

}  // namespace

void mlp_train_forward(const MlpWeights& w, const float* x, int64_t n, MlpActivations& a, float* out) {
  const int64_t width = w.gate_proj.rows, d = w.gate_proj.cols;
  a.gate_up.resize(n * 2 * width);
  a.act.resize(n * width);
  linear_forward(x, n, stacked_gate_up(w), 2 * width, d, a.gate_up.data());
  parallel_for(n, row_grain(width), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gate = a.gate_up.data() + r * 2 * width;
      silu_mul_to(gate, gate + width, a.act.data() + r * width, width);
    }
  });
  linear_forward(a.act.data(), n, f32(w.down_proj), d, width, out);
}

void mlp_train_backward(const MlpWeights& w, const MlpWeights& g, const float* x, int64_t n, const MlpActivations& a,
                        const float* dout, float* dx) {
  const int64_t width = w.gate_proj.rows, d = w.gate_proj.cols;
  std::vector<float> d_act(n * width), d_gate_up(n * 2 * width);
  linear_backward_weight(dout, n, a.act.data(), d, width, mut(g.down_proj));
  linear_backward_input(dout, n, f32(w.down_proj), d, width, d_act.data(), false);
  parallel_for(n, row_grain(width), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gate = a.gate_up.data() + r * 2 * width;
      float* d_gate = d_gate_up.data() + r * 2 * width;
      silu_mul_backward(gate, gate + width, d_act.data() + r * width, width, d_gate, d_gate + width);
    }
  });
  linear_backward_weight(d_gate_up.data(), n, x, 2 * width, d, const_cast<float*>(stacked_gate_up(g)));
  linear_backward_input(d_gate_up.data(), n, stacked_gate_up(w), 2 * width, d, dx, true);
}

namespace {

// How many devices one token may send to (M of the communication loss).
int64_t device_limit(const Config& c, const MoeTrainingOptions& o) {
  if (c.topk_method == "group_limited_greedy" && c.n_group == o.devices) return c.topk_group;
  return std::min<int64_t>(c.num_experts_per_tok, o.devices);
}

// Sums over the step's batch: every rank's values added (rank order), or the
// local ones when this process holds the whole batch.
void sum_over_batch(const MoeContext& ctx, double* values, int64_t n) {
  if (ctx.batch_group) ctx.batch_group->sum(values, n);
}
void sum_over_batch(const MoeContext& ctx, int64_t* values, int64_t n) {
  if (ctx.batch_group) ctx.batch_group->sum(values, n);
}

// One droppable assignment as every rank sees it when deciding what to drop.
struct DropCandidate {
  int32_t device;
  float score;    // affinity s of the token for the expert
  int64_t index;  // (global token)·K + slot: the tie-break, so the choice never depends on the rank layout
  bool operator<(const DropCandidate& o) const { return score != o.score ? score < o.score : index < o.index; }
};

// Device-level token dropping (DeepSeek-V2 §3.1.3): each device's budget is
// capacity × its average share of the batch's assignments; over budget, its
// lowest-affinity assignments are dropped, except in never-drop sequences.
// Decided over the whole step's batch, so that one process with simulated
// devices and any rank layout of real ones drop exactly the same assignments:
// every rank shares its droppable candidates for over-budget devices, and all
// find the same cut.
void drop_tokens(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, int64_t N, int64_t global_tokens,
                 int64_t T, const std::vector<uint8_t>& droppable, MoeActivations& a, MoeStats& stats) {
  const int64_t K = c.num_experts_per_tok, D = o.devices, per_device = c.n_routed_experts / D;
  const double budget = std::floor(o.capacity_factor * static_cast<double>(global_tokens * K) / static_cast<double>(D));
  std::vector<int64_t> count(D, 0);
  for (int64_t i = 0; i < N * K; ++i) ++count[a.chosen[i] / per_device];
  sum_over_batch(ctx, count.data(), D);
  std::vector<int64_t> excess(D, 0);
  bool any = false;
  for (int64_t dv = 0; dv < D; ++dv) any |= (excess[dv] = std::max<int64_t>(0, count[dv] - static_cast<int64_t>(budget))) > 0;
  if (!any) return;
  const int64_t first_token = ctx.first_sequence * T;
  std::vector<DropCandidate> mine;
  for (int64_t i = 0; i < N * K; ++i) {
    const int32_t dv = static_cast<int32_t>(a.chosen[i] / per_device);
    if (excess[dv] > 0 && droppable[(i / K) / T])
      mine.push_back({dv, a.scores[(i / K) * c.n_routed_experts + a.chosen[i]], first_token * K + i});
  }
  std::vector<DropCandidate> all = mine;
  if (ctx.batch_group) {
    all.clear();
    for (const std::string& part :
         ctx.batch_group->all_gather(std::string(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(DropCandidate)))) {
      const size_t n = part.size() / sizeof(DropCandidate);
      all.resize(all.size() + n);
      std::memcpy(all.data() + all.size() - n, part.data(), part.size());
    }
  }
  // The last dropped candidate of each device: the excess-th lowest affinity.
  std::vector<std::vector<DropCandidate>> by_device(D);
  for (const DropCandidate& x : all) by_device[x.device].push_back(x);
  std::vector<DropCandidate> cut(D);
  std::vector<uint8_t> drops_all(D, 0), drops_none(D, 0);
  for (int64_t dv = 0; dv < D; ++dv) {
    auto& list = by_device[dv];
    if (excess[dv] == 0 || list.empty()) {
      drops_none[dv] = 1;
    } else if (excess[dv] >= static_cast<int64_t>(list.size())) {
      drops_all[dv] = 1;
    } else {
      std::nth_element(list.begin(), list.begin() + (excess[dv] - 1), list.end());
      cut[dv] = list[excess[dv] - 1];
    }
  }
  for (const DropCandidate& x : mine) {
    if (drops_none[x.device] || (!drops_all[x.device] && cut[x.device] < x)) continue;
    a.routed[x.index - first_token * K] = -1;
    ++stats.dropped;
  }
}

// The balance losses over the step's batch (DeepSeek-V2 eq. 23-31) and, for
// the backward pass, their gradient with respect to each score s_{e,t}.
void balance_losses(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, int64_t B, int64_t T,
                    int64_t global_tokens, int64_t global_sequences, MoeActivations& a, MoeStats& stats) {
  const int64_t N = B * T, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const int64_t D = o.devices, per_device = E / D, M = device_limit(c, o);
  // One sum over the batch: [selected (E) | Σ_t s (E) | tokens sent per device (D) | sequence loss (1)].
  std::vector<double> sums(2 * E + D + 1, 0.0);
  double* selected = sums.data();
  double* score_sum = selected + E;
  double* sent_to = score_sum + E;
  for (int32_t e : a.chosen) selected[e] += 1.0;
  for (int64_t t = 0; t < N; ++t)
    for (int64_t e = 0; e < E; ++e) score_sum[e] += a.scores[t * E + e];
  std::vector<uint8_t> sent(D);
  for (int64_t t = 0; t < N; ++t) {
    std::fill(sent.begin(), sent.end(), 0);
    for (int64_t k = 0; k < K; ++k) sent[a.chosen[t * K + k] / per_device] = 1;
    for (int64_t dv = 0; dv < D; ++dv) sent_to[dv] += sent[dv];
  }
  if (o.alpha_sequence > 0.0) {  // V3: per sequence, on scores normalised over experts
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> fs(E, 0.0), Ps(E, 0.0);
      for (int64_t t = b * T; t < (b + 1) * T; ++t) {
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) sum += a.scores[t * E + e];
        for (int64_t e = 0; e < E; ++e) Ps[e] += a.scores[t * E + e] / sum / T;
        for (int64_t k = 0; k < K; ++k) fs[a.chosen[t * K + k]] += static_cast<double>(E) / (K * T);
      }
      for (int64_t e = 0; e < E; ++e) sums[2 * E + D] += fs[e] * Ps[e] / global_sequences;
    }
  }
  sum_over_batch(ctx, sums.data(), static_cast<int64_t>(sums.size()));
  stats.sequence_loss = sums[2 * E + D];
  stats.selected.assign(E, 0);
  for (int64_t e = 0; e < E; ++e) stats.selected[e] = static_cast<int64_t>(selected[e]);

  const double n = static_cast<double>(global_tokens);
  std::vector<double> f(E), P(E), f_dev(D, 0.0), P_dev(D, 0.0), f_comm(D);
  for (int64_t e = 0; e < E; ++e) f[e] = static_cast<double>(E) / (K * n) * selected[e], P[e] = score_sum[e] / n;
  for (int64_t e = 0; e < E; ++e) f_dev[e / per_device] += f[e] / per_device, P_dev[e / per_device] += P[e];
  for (int64_t dv = 0; dv < D; ++dv) f_comm[dv] = sent_to[dv] * static_cast<double>(D) / (M * n);
  for (int64_t e = 0; e < E; ++e) stats.expert_loss += f[e] * P[e];
  for (int64_t dv = 0; dv < D; ++dv) stats.device_loss += f_dev[dv] * P_dev[dv], stats.comm_loss += f_comm[dv] * P_dev[dv];
  stats.balance_loss = o.alpha_expert * stats.expert_loss + o.alpha_device * stats.device_loss + o.alpha_comm * stats.comm_loss;
  // d/ds_{e,t} of α·Σ f·P with the frequencies held constant: P_e = Σ_t s_{e,t} / n.
  a.balance_gradient.resize(E);
  for (int64_t e = 0; e < E; ++e)
    a.balance_gradient[e] =
        (o.alpha_expert * f[e] + o.alpha_device * f_dev[e / per_device] + o.alpha_comm * f_comm[e / per_device]) / n;
}

// Routed experts held here, in decreasing order of their row counts (ties by
// index): handed out in this order, the last items left for an idle thread are
// the small ones.
std::vector<int64_t> experts_by_load(const MoeActivations& a) {
  std::vector<int64_t> order(a.row_of.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return a.row_of[x].size() > a.row_of[y].size(); });
  return order;
}

// dst[i] += weight · rows[e][j] for each assignment (slot s of received row i
// to local expert e, j its place in e's list), in slot order, so the sums do not
// depend on the thread count. The forward pass adds expert outputs with their
// gates (weighted), the backward pass input gradients.
void add_expert_rows(const MoeActivations& a, const dist::ExpertRows& x, int64_t first, bool weighted,
                     const std::vector<std::vector<float>>& rows, float* dst) {
  const int64_t K = x.k, d = x.d;
  parallel_for(x.rows, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t s = 0; s < K; ++s)
        if (const int64_t j = a.row_in_expert[i * K + s]; j >= 0)
          axpy(weighted ? x.gate(i, s) : 1.0f, rows[x.expert(i, s) - first].data() + j * d, dst + i * d, d);
  });
}

// The routed experts held here, on the rows the dispatcher delivered:
// rows_out[i] = Σ over row i's slots here of gate · expert(row i).
void routed_experts_forward(const MoeWeights& w, const dist::ExpertPlacement& place, const dist::ExpertRows& x,
                            MoeActivations& a) {
  const int64_t K = x.k, d = x.d, local = place.per_rank(), first = place.first();
  // The per-expert lists keep their storage from step to step (clear, not reallocate).
  a.row_of.resize(local);
  a.slot_of.resize(local);
  for (int64_t e = 0; e < local; ++e) a.row_of[e].clear(), a.slot_of[e].clear();
  a.row_in_expert.assign(x.rows * K, -1);
  for (int64_t i = 0; i < x.rows; ++i)
    for (int64_t s = 0; s < K; ++s)
      if (const int32_t e = x.expert(i, s); e >= 0) {
        a.row_in_expert[i * K + s] = static_cast<int64_t>(a.row_of[e - first].size());
        a.row_of[e - first].push_back(i), a.slot_of[e - first].push_back(static_cast<int32_t>(s));
      }
  a.inputs.resize(local);
  a.outputs.resize(local);
  a.experts.resize(local);
  // One expert per thread at a time (its GEMMs single-threaded): at ~N·K/E
  // tokens an expert's products are too small to split well over threads.
  const std::vector<int64_t> order = experts_by_load(a);
  parallel_for_each(local, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = order[i], m = static_cast<int64_t>(a.row_of[e].size());
      if (m == 0) continue;
      a.inputs[e].resize(m * d);
      a.outputs[e].resize(m * d);
      for (int64_t j = 0; j < m; ++j) std::memcpy(a.inputs[e].data() + j * d, x.row(a.row_of[e][j]), d * sizeof(float));
      mlp_train_forward(w.experts[first + e], a.inputs[e].data(), m, a.experts[e], a.outputs[e].data());
    }
  });
  a.rows_out.assign(x.rows * d, 0.0f);
  add_expert_rows(a, x, first, true, a.outputs, a.rows_out.data());
}

}  // namespace

void moe_train_forward(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, const MoeWeights& w,
                       const float* u, int64_t B, int64_t T, const std::vector<uint8_t>& droppable, bool training,
                       MoeActivations& a, MoeStats& stats, float* out) {
  const int64_t N = B * T, d = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const int64_t global_sequences = ctx.global_sequences > 0 ? ctx.global_sequences : B, global_tokens = global_sequences * T;
  std::vector<float> logits(N * E);
  linear_forward(u, N, f32(w.gate), E, d, logits.data());
  a.scores = logits;
  for (int64_t t = 0; t < N; ++t) {
    float* s = a.scores.data() + t * E;
    if (c.scoring_func == "sigmoid")
      for (int64_t e = 0; e < E; ++e) s[e] = sigmoid(s[e]);
    else
      softmax(s, E);
  }
  a.chosen.resize(N * K);
  a.gates.resize(N * K);
  route_tokens(c, logits.data(), w.e_score_correction_bias.empty() ? nullptr : w.e_score_correction_bias.data(), N,
               a.chosen.data(), a.gates.data());
  stats = MoeStats{};
  stats.assignments = global_tokens * K;
  balance_losses(c, o, ctx, B, T, global_tokens, global_sequences, a, stats);
  a.routed = a.chosen;
  if (training && o.capacity_factor > 0.0) drop_tokens(c, o, ctx, N, global_tokens, T, droppable, a, stats);

  // Tokens leave for their experts while the shared experts run here
  // (DeepSeek-V2 overlaps the shared experts with the all-to-all).
  dist::TokenDispatcher& dispatcher = *ctx.dispatcher;
  dispatcher.start_dispatch(u, N, d, a.routed.data(), a.gates.data(), K, a.plan);
  if (c.n_shared_experts > 0)
    mlp_train_forward(w.shared_experts, u, N, a.shared, out);
  else
    std::fill(out, out + N * d, 0.0f);
  const dist::ExpertRows& rows = dispatcher.finish_dispatch(a.plan);
  routed_experts_forward(w, dispatcher.placement(), rows, a);
  dispatcher.combine(a.plan, a.rows_out.data(), out);

  // Loads after dropping, over the batch: [per expert | dropped].
  std::vector<int64_t> load(E + 1, 0);
  for (int32_t e : a.routed)
    if (e >= 0) ++load[e];
  load[E] = stats.dropped;
  sum_over_batch(ctx, load.data(), E + 1);
  stats.dropped = load[E];
  const double mean_load = static_cast<double>(std::accumulate(load.begin(), load.begin() + E, int64_t{0})) / E;
  stats.max_violation = mean_load > 0 ? *std::max_element(load.begin(), load.begin() + E) / mean_load - 1.0 : 0.0;
}

void moe_train_backward(const Config& c, const MoeTrainingOptions& o, const MoeContext& ctx, const MoeWeights& w,
                        const MoeWeights& g, const float* u, int64_t B, int64_t T, MoeActivations& a, const float* dout,
                        float* du) {
  const int64_t N = B * T, d = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  dist::TokenDispatcher& dispatcher = *ctx.dispatcher;
  dispatcher.start_dispatch_gradient(a.plan, dout);
  if (c.n_shared_experts > 0) mlp_train_backward(w.shared_experts, g.shared_experts, u, N, a.shared, dout, du);

  // The routed experts held here: gate gradients d_gate = dout·y and the
  // experts' input gradients, per received row.
  const float* dout_rows = dispatcher.finish_dispatch_gradient(a.plan);
  const dist::ExpertRows& x = a.plan.received;
  const int64_t first = dispatcher.placement().first();
  std::vector<float> d_gate_rows(x.rows * K, 0.0f), d_rows(x.rows * d, 0.0f);
  std::vector<std::vector<float>> d_inputs(a.row_of.size());  // per local expert: d loss / d gathered rows
  const std::vector<int64_t> order = experts_by_load(a);
  parallel_for_each(static_cast<int64_t>(order.size()), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = order[i], m = static_cast<int64_t>(a.row_of[e].size());
      if (m == 0) continue;
      std::vector<float> d_y(m * d);
      d_inputs[e].assign(m * d, 0.0f);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t row = a.row_of[e][j], slot = a.slot_of[e][j];
        const float* dy_row = dout_rows + row * d;
        d_gate_rows[row * K + slot] = dot(dy_row, a.outputs[e].data() + j * d, d);
        const float gate = x.gate(row, slot);
        for (int64_t v = 0; v < d; ++v) d_y[j * d + v] = gate * dy_row[v];
      }
      mlp_train_backward(w.experts[first + e], g.experts[first + e], a.inputs[e].data(), m, a.experts[e], d_y.data(),
                         d_inputs[e].data());
    }
  });
  add_expert_rows(a, x, first, false, d_inputs, d_rows.data());
  std::vector<float> d_gate(N * K);
  dispatcher.combine_gradient(a.plan, d_rows.data(), d_gate_rows.data(), du, d_gate.data());

  // Gates g_k = scale·s_k (/ Σ_selected s when norm_topk_prob), through the scores.
  const float scale = static_cast<float>(c.routed_scaling_factor);
  std::vector<float> d_scores(N * E, 0.0f);
  for (int64_t t = 0; t < N; ++t) {
    const float* s = a.scores.data() + t * E;
    float* ds = d_scores.data() + t * E;
    if (c.norm_topk_prob) {
      double sum = 1e-20, weighted = 0.0;
      for (int64_t k = 0; k < K; ++k) sum += s[a.chosen[t * K + k]];
      for (int64_t k = 0; k < K; ++k) weighted += d_gate[t * K + k] * s[a.chosen[t * K + k]];
      for (int64_t k = 0; k < K; ++k)
        ds[a.chosen[t * K + k]] += static_cast<float>(scale / sum * (d_gate[t * K + k] - weighted / sum));
    } else {
      for (int64_t k = 0; k < K; ++k) ds[a.chosen[t * K + k]] += scale * d_gate[t * K + k];
    }
  }
  // Balance losses (the coefficients come from the forward pass's batch statistics).
  if (o.alpha_expert > 0 || o.alpha_device > 0 || o.alpha_comm > 0) {
    for (int64_t e = 0; e < E; ++e) {
      const float coeff = static_cast<float>(a.balance_gradient[e]);
      for (int64_t t = 0; t < N; ++t) d_scores[t * E + e] += coeff;
    }
  }
  if (o.alpha_sequence > 0) {
    const int64_t global_sequences = ctx.global_sequences > 0 ? ctx.global_sequences : B;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> fs(E, 0.0);
      for (int64_t t = b * T; t < (b + 1) * T; ++t)
        for (int64_t k = 0; k < K; ++k) fs[a.chosen[t * K + k]] += static_cast<double>(E) / (K * T);
      for (int64_t t = b * T; t < (b + 1) * T; ++t) {
        const float* s = a.scores.data() + t * E;
        double sum = 0.0, weighted = 0.0;
        for (int64_t e = 0; e < E; ++e) sum += s[e];
        // L = α/B Σ_e fs_e·(1/T)·s_e/sum: d/ds_j = α/(B·T)·(fs_j − Σ_e fs_e·s_e/sum)/sum
        for (int64_t e = 0; e < E; ++e) weighted += fs[e] * s[e] / sum;
        for (int64_t e = 0; e < E; ++e)
          d_scores[t * E + e] += static_cast<float>(o.alpha_sequence / (global_sequences * T) * (fs[e] - weighted) / sum);
      }
    }
  }
  std::vector<float> d_logits(N * E);
  for (int64_t t = 0; t < N; ++t) {
    const float* s = a.scores.data() + t * E;
    if (c.scoring_func == "sigmoid")
      for (int64_t e = 0; e < E; ++e) d_logits[t * E + e] = d_scores[t * E + e] * s[e] * (1.0f - s[e]);
    else
      softmax_backward(s, d_scores.data() + t * E, E, d_logits.data() + t * E);
  }
  linear_backward_weight(d_logits.data(), N, u, E, d, mut(g.gate));
  linear_backward_input(d_logits.data(), N, f32(w.gate), E, d, du, true);
}

}  // namespace dsv2
