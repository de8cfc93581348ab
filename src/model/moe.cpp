// DeepSeekMoE layer (DeepSeek-V2 §2.2.1): shared experts always run; each token
// also runs its k routed experts, weighted by the router's gates. Tokens are
// gathered per expert so that each expert runs one batched matmul, and experts
// that no token chose cost nothing.
#include "model/moe.h"

#include <vector>

#include "model/router.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kGate, kUp, kMlpInputs, kMlpOutputs, kRouterLogits, kSharedOut };
}

void mlp_forward(const MlpWeights& w, const float* x, int64_t tokens, float* out, Scratch& scratch) {
  const int64_t width = w.gate_proj.rows;
  float* gate = scratch.get(kGate, tokens * width);
  float* up = scratch.get(kUp, tokens * width);
  matmul(x, tokens, w.gate_proj, gate);
  matmul(x, tokens, w.up_proj, up);
  silu_mul(gate, up, tokens * width);
  matmul(gate, tokens, w.down_proj, out);
}

namespace {

// One token (decoding): the shared experts and the k chosen ones as two
// parallel regions — every gate and up projection, then every down
// projection — rather than three fork/joins per expert.
void moe_forward_one_token(const Config& c, const MoeWeights& w, const float* u, const int32_t* chosen,
                           const float* gates, float* out, Scratch& scratch) {
  const int64_t d = c.hidden_size, k = c.num_experts_per_tok;
  thread_local std::vector<const MlpWeights*> expert_list;  // grow-only
  thread_local std::vector<MatVec> product_list;
  std::vector<const MlpWeights*>& experts = expert_list;
  std::vector<MatVec>& products = product_list;
  experts.clear();
  if (c.n_shared_experts > 0) experts.push_back(&w.shared_experts);
  for (int64_t i = 0; i < k; ++i) experts.push_back(&w.experts[chosen[i]]);
  int64_t width = 0;
  for (const MlpWeights* e : experts) width += e->gate_proj.rows;
  float* gate = scratch.get(kGate, width);
  float* up = scratch.get(kUp, width);
  float* down = scratch.get(kMlpOutputs, static_cast<int64_t>(experts.size()) * d);
  products.clear();
  for (int64_t at = 0; const MlpWeights* e : experts) {
    products.push_back({&e->gate_proj, u, gate + at});
    products.push_back({&e->up_proj, u, up + at});
    at += e->gate_proj.rows;
  }
  matvec_many(products.data(), static_cast<int64_t>(products.size()));
  silu_mul(gate, up, width);
  products.clear();
  for (int64_t at = 0, i = 0; const MlpWeights* e : experts) {
    products.push_back({&e->down_proj, gate + at, down + i++ * d});
    at += e->gate_proj.rows;
  }
  matvec_many(products.data(), static_cast<int64_t>(products.size()));
  const bool shared = c.n_shared_experts > 0;
  for (int64_t i = 0; i < d; ++i) out[i] = shared ? down[i] : 0.0f;
  for (int64_t i = 0; i < k; ++i) axpy(gates[i], down + (i + (shared ? 1 : 0)) * d, out, d);
}

}  // namespace

void moe_forward(const Config& c, const MoeWeights& w, const float* u, int64_t tokens, float* out, Scratch& scratch) {
  const int64_t d = c.hidden_size, n = c.n_routed_experts, k = c.num_experts_per_tok;

  float* logits = scratch.get(kRouterLogits, tokens * n);
  matmul(u, tokens, w.gate, logits);
  // Grow-only buffers: steady-state decoding runs a layer without allocating.
  thread_local std::vector<int32_t> chosen, first_assignment, slot_token;
  thread_local std::vector<float> gates, slot_gate;
  chosen.resize(tokens * k), gates.resize(tokens * k);
  route_tokens(c, logits, w.e_score_correction_bias.empty() ? nullptr : w.e_score_correction_bias.data(), tokens,
               chosen.data(), gates.data());
  if (tokens == 1) return moe_forward_one_token(c, w, u, chosen.data(), gates.data(), out, scratch);

  // Shared experts: one MLP of width n_shared · moe_intermediate_size.
  if (c.n_shared_experts > 0) {
    mlp_forward(w.shared_experts, u, tokens, out, scratch);
  } else {
    for (int64_t i = 0; i < tokens * d; ++i) out[i] = 0.0f;
  }

  // Routed experts, in expert order: gather their tokens, run, scatter g·y back.
  // The (token, gate) assignments are bucketed by expert with a counting sort:
  // expert e's are slots [first_assignment[e], first_assignment[e + 1]).
  first_assignment.assign(n + 1, 0);
  for (int64_t a = 0; a < tokens * k; ++a) ++first_assignment[chosen[a] + 1];
  for (int64_t e = 0; e < n; ++e) first_assignment[e + 1] += first_assignment[e];
  slot_token.resize(tokens * k), slot_gate.resize(tokens * k);
  for (int64_t a = 0; a < tokens * k; ++a) {
    const auto t = static_cast<int32_t>(a / k);
    const int32_t slot = first_assignment[chosen[a]]++;  // advances to the next free slot
    slot_token[slot] = t, slot_gate[slot] = gates[a];
  }
  for (int64_t e = n; e > 0; --e) first_assignment[e] = first_assignment[e - 1];  // undo the advancing
  first_assignment[0] = 0;
  for (int64_t e = 0; e < n; ++e) {
    const int64_t begin = first_assignment[e], m = first_assignment[e + 1] - begin;
    if (m == 0) continue;  // no token chose this expert: it costs nothing
    float* inputs = scratch.get(kMlpInputs, m * d);
    float* outputs = scratch.get(kMlpOutputs, m * d);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < d; ++i) inputs[j * d + i] = u[slot_token[begin + j] * d + i];
    mlp_forward(w.experts[e], inputs, m, outputs, scratch);
    for (int64_t j = 0; j < m; ++j) axpy(slot_gate[begin + j], outputs + j * d, out + slot_token[begin + j] * d, d);
  }
}

}  // namespace dsv2
