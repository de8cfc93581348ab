#include "train/moe_train.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/parallel.h"
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

// Token rows per thread chunk when gathering to and scattering from an expert.
constexpr int64_t kTokenGrain = 64;

// Budget of assignments per device when dropping: capacity × (all assignments / D).
void drop_tokens(const Config& c, const MoeTrainingOptions& o, int64_t T, const std::vector<uint8_t>& droppable,
                 MoeActivations& a, MoeStats& stats) {
  const int64_t N = static_cast<int64_t>(a.chosen.size()) / c.num_experts_per_tok, K = c.num_experts_per_tok;
  const int64_t per_device = c.n_routed_experts / o.devices;
  const double budget = o.capacity_factor * static_cast<double>(N * K) / static_cast<double>(o.devices);
  std::vector<std::vector<int64_t>> by_device(o.devices);  // assignment indices t·K + k
  for (int64_t i = 0; i < N * K; ++i) by_device[a.chosen[i] / per_device].push_back(i);
  for (auto& list : by_device) {
    int64_t excess = static_cast<int64_t>(list.size()) - static_cast<int64_t>(std::floor(budget));
    if (excess <= 0) continue;
    // Lowest affinity first; sequences marked never-drop keep everything.
    std::vector<int64_t> candidates;
    for (int64_t i : list)
      if (droppable[(i / K) / T]) candidates.push_back(i);
    std::sort(candidates.begin(), candidates.end(), [&](int64_t x, int64_t y) {
      const float sx = a.scores[(x / K) * c.n_routed_experts + a.chosen[x]];
      const float sy = a.scores[(y / K) * c.n_routed_experts + a.chosen[y]];
      return sx != sy ? sx < sy : x < y;
    });
    for (int64_t i = 0; i < static_cast<int64_t>(candidates.size()) && excess > 0; ++i, --excess) {
      a.kept[candidates[i]] = 0;
      ++stats.dropped;
    }
  }
}

// Experts in decreasing order of their token counts (ties by index): handed
// out in this order, the last items left for an idle thread are the small ones.
std::vector<int64_t> experts_by_load(const MoeActivations& a) {
  std::vector<int64_t> order(a.token_of.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return a.token_of[x].size() > a.token_of[y].size(); });
  return order;
}

// dst[t] += weight[t, k] · rows[e][j] for each kept assignment k of token t
// (expert e = chosen[t, k], j its row in e's list), in routing order, so the
// sums do not depend on the thread count; weight null means 1. The forward pass
// adds expert outputs with their gates, the backward pass input gradients.
void add_expert_rows(const MoeActivations& a, const std::vector<std::vector<float>>& rows, const float* weight,
                     int64_t N, int64_t K, int64_t d, float* dst) {
  parallel_for(N, kTokenGrain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (a.row_in_expert[t * K + k] >= 0)
          axpy(weight ? weight[t * K + k] : 1.0f, rows[a.chosen[t * K + k]].data() + a.row_in_expert[t * K + k] * d,
               dst + t * d, d);
  });
}

// How many devices one token may send to (M of the communication loss).
int64_t device_limit(const Config& c, const MoeTrainingOptions& o) {
  if (c.topk_method == "group_limited_greedy" && c.n_group == o.devices) return c.topk_group;
  return std::min<int64_t>(c.num_experts_per_tok, o.devices);
}

}  // namespace

void moe_train_forward(const Config& c, const MoeTrainingOptions& o, const MoeWeights& w, const float* u, int64_t B,
                       int64_t T, const std::vector<uint8_t>& droppable, bool training, MoeActivations& a,
                       MoeStats& stats, float* out) {
  const int64_t N = B * T, d = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
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
  a.kept.assign(N * K, 1);
  stats = MoeStats{};
  stats.assignments = N * K;
  stats.selected.assign(E, 0);
  for (int32_t e : a.chosen) ++stats.selected[e];
  if (training && o.capacity_factor > 0.0) drop_tokens(c, o, T, droppable, a, stats);

  // Balance losses over the N tokens of the batch (DeepSeek-V2 eq. 23-31).
  const int64_t D = o.devices, per_device = E / D, M = device_limit(c, o);
  std::vector<double> f(E), P(E, 0.0), f_dev(D, 0.0), P_dev(D, 0.0), f_comm(D, 0.0);
  for (int64_t e = 0; e < E; ++e) f[e] = static_cast<double>(E) / (K * N) * stats.selected[e];
  for (int64_t t = 0; t < N; ++t)
    for (int64_t e = 0; e < E; ++e) P[e] += a.scores[t * E + e] / N;
  for (int64_t e = 0; e < E; ++e) f_dev[e / per_device] += f[e] / per_device, P_dev[e / per_device] += P[e];
  for (int64_t t = 0; t < N; ++t) {
    std::vector<uint8_t> sent(D, 0);
    for (int64_t k = 0; k < K; ++k) sent[a.chosen[t * K + k] / per_device] = 1;
    for (int64_t dv = 0; dv < D; ++dv) f_comm[dv] += sent[dv] * static_cast<double>(D) / (M * N);
  }
  for (int64_t e = 0; e < E; ++e) stats.expert_loss += f[e] * P[e];
  for (int64_t dv = 0; dv < D; ++dv) stats.device_loss += f_dev[dv] * P_dev[dv], stats.comm_loss += f_comm[dv] * P_dev[dv];
  stats.balance_loss = o.alpha_expert * stats.expert_loss + o.alpha_device * stats.device_loss + o.alpha_comm * stats.comm_loss;
  if (o.alpha_sequence > 0.0) {  // V3: per sequence, on scores normalised over experts
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> fs(E, 0.0), Ps(E, 0.0);
      for (int64_t t = b * T; t < (b + 1) * T; ++t) {
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) sum += a.scores[t * E + e];
        for (int64_t e = 0; e < E; ++e) Ps[e] += a.scores[t * E + e] / sum / T;
        for (int64_t k = 0; k < K; ++k) fs[a.chosen[t * K + k]] += static_cast<double>(E) / (K * T);
      }
      for (int64_t e = 0; e < E; ++e) stats.sequence_loss += fs[e] * Ps[e] / B;
    }
  }

  // Shared experts, then the routed experts with their gathered tokens.
  if (c.n_shared_experts > 0)
    mlp_train_forward(w.shared_experts, u, N, a.shared, out);
  else
    std::fill(out, out + N * d, 0.0f);
  // The per-expert lists keep their storage from step to step (clear, not reallocate).
  a.token_of.resize(E);
  a.slot_of.resize(E);
  for (int64_t e = 0; e < E; ++e) a.token_of[e].clear(), a.slot_of[e].clear();
  a.row_in_expert.assign(N * K, -1);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t k = 0; k < K; ++k)
      if (a.kept[t * K + k]) {
        const int32_t e = a.chosen[t * K + k];
        a.row_in_expert[t * K + k] = static_cast<int64_t>(a.token_of[e].size());
        a.token_of[e].push_back(t), a.slot_of[e].push_back(static_cast<int32_t>(k));
      }
  a.inputs.resize(E);
  a.outputs.resize(E);
  a.experts.resize(E);
  // One expert per thread at a time (its GEMMs single-threaded): at ~N·K/E
  // tokens an expert's products are too small to split well over threads.
  const std::vector<int64_t> order = experts_by_load(a);
  parallel_for_each(E, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = order[i], m = static_cast<int64_t>(a.token_of[e].size());
      if (m == 0) continue;
      a.inputs[e].resize(m * d);
      a.outputs[e].resize(m * d);
      for (int64_t j = 0; j < m; ++j) std::copy(u + a.token_of[e][j] * d, u + (a.token_of[e][j] + 1) * d, a.inputs[e].data() + j * d);
      mlp_train_forward(w.experts[e], a.inputs[e].data(), m, a.experts[e], a.outputs[e].data());
    }
  });
  add_expert_rows(a, a.outputs, a.gates.data(), N, K, d, out);
  std::vector<int64_t> load(E);
  for (int64_t e = 0; e < E; ++e) load[e] = static_cast<int64_t>(a.token_of[e].size());
  const double mean_load = static_cast<double>(std::accumulate(load.begin(), load.end(), int64_t{0})) / E;
  stats.max_violation = mean_load > 0 ? *std::max_element(load.begin(), load.end()) / mean_load - 1.0 : 0.0;
}

void moe_train_backward(const Config& c, const MoeTrainingOptions& o, const MoeWeights& w, const MoeWeights& g,
                        const float* u, int64_t B, int64_t T, const MoeActivations& a, const float* dout, float* du) {
  const int64_t N = B * T, d = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  if (c.n_shared_experts > 0) mlp_train_backward(w.shared_experts, g.shared_experts, u, N, a.shared, dout, du);

  std::vector<float> d_gate(N * K, 0.0f);
  std::vector<std::vector<float>> d_inputs(E);  // per expert: d loss / d gathered u
  const std::vector<int64_t> order = experts_by_load(a);
  parallel_for_each(E, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = order[i], m = static_cast<int64_t>(a.token_of[e].size());
      if (m == 0) continue;
      std::vector<float> d_y(m * d);
      d_inputs[e].assign(m * d, 0.0f);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t t = a.token_of[e][j], slot = t * K + a.slot_of[e][j];
        d_gate[slot] = dot(dout + t * d, a.outputs[e].data() + j * d, d);
        for (int64_t x = 0; x < d; ++x) d_y[j * d + x] = a.gates[slot] * dout[t * d + x];
      }
      mlp_train_backward(w.experts[e], g.experts[e], a.inputs[e].data(), m, a.experts[e], d_y.data(), d_inputs[e].data());
    }
  });
  add_expert_rows(a, d_inputs, nullptr, N, K, d, du);

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
  // Balance losses: d/ds_{i,t} of α·Σ f·P with the frequencies held constant.
  if (o.alpha_expert > 0 || o.alpha_device > 0 || o.alpha_comm > 0) {
    const int64_t D = o.devices, per_device = E / D, M = device_limit(c, o);
    std::vector<double> f(E, 0.0), f_dev(D, 0.0), f_comm(D, 0.0);
    for (int64_t i = 0; i < N * K; ++i) f[a.chosen[i]] += static_cast<double>(E) / (K * N);
    for (int64_t e = 0; e < E; ++e) f_dev[e / per_device] += f[e] / per_device;
    for (int64_t t = 0; t < N; ++t) {
      std::vector<uint8_t> sent(D, 0);
      for (int64_t k = 0; k < K; ++k) sent[a.chosen[t * K + k] / per_device] = 1;
      for (int64_t dv = 0; dv < D; ++dv) f_comm[dv] += sent[dv] * static_cast<double>(D) / (M * N);
    }
    for (int64_t e = 0; e < E; ++e) {
      const double coeff = (o.alpha_expert * f[e] + o.alpha_device * f_dev[e / per_device] +
                            o.alpha_comm * f_comm[e / per_device]) / N;
      for (int64_t t = 0; t < N; ++t) d_scores[t * E + e] += static_cast<float>(coeff);
    }
  }
  if (o.alpha_sequence > 0) {
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
          d_scores[t * E + e] += static_cast<float>(o.alpha_sequence / (B * T) * (fs[e] - weighted) / sum);
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
