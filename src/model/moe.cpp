// DeepSeekMoE layer (DeepSeek-V2 §2.2.1): shared experts always run; each token
// also runs its k routed experts, weighted by the router's gates. Tokens are
// gathered per expert so that each expert runs one batched matmul, and experts
// that no token chose cost nothing.
#include "model/moe.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "model/router.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {
enum Slot : size_t { kGate, kUp, kMlpInputs, kMlpOutputs, kRouterLogits, kSharedOut, kAllActivations, kDownRows };

// silu(gate·x) ⊙ up·x for the rows of gate_proj and up_proj that w holds: [tokens, w.gate_proj.rows].
const float* mlp_activations(const MlpWeights& w, const float* x, int64_t tokens, Scratch& scratch, int64_t step_rows) {
  const int64_t width = w.gate_proj.rows;
  float* gate = scratch.get(kGate, tokens * width);
  float* up = scratch.get(kUp, tokens * width);
  matmul(x, tokens, w.gate_proj, gate, step_rows);
  matmul(x, tokens, w.up_proj, up, step_rows);
  silu_mul(gate, up, tokens * width);
  return gate;
}

// A split MLP's rows of down(silu(gate·x) ⊙ up·x): this rank's slice of the
// activations, every rank's slice exchanged, then this rank's rows of down_proj.
// rows_out: [tokens, plan.hidden.count(rank)].
void mlp_rows(const MlpWeights& w, const float* x, int64_t tokens, float* rows_out, Scratch& scratch, const ShardPlan& plan,
              const Split& width) {
  const float* mine = mlp_activations(w, x, tokens, scratch, 0);
  float* all = scratch.get(kAllActivations, tokens * width.total());
  plan.group->gather_columns(mine, tokens, width.bounds, all);
  matmul(all, tokens, w.down_proj, rows_out);
}

// out[:, first .. first + width) = rows [tokens, width], the other columns 0.
void place_columns(const float* rows, int64_t tokens, int64_t first, int64_t width, int64_t d, float* out) {
  std::fill(out, out + tokens * d, 0.0f);
  for (int64_t t = 0; t < tokens; ++t) std::copy(rows + t * width, rows + (t + 1) * width, out + t * d + first);
}

}  // namespace

void mlp_forward(const MlpWeights& w, const float* x, int64_t tokens, float* out, Scratch& scratch, const ShardPlan& plan,
                 const Split& width, int64_t step_rows) {
  if (plan.split()) {
    float* rows = scratch.get(kDownRows, tokens * plan.hidden.count(plan.rank));
    mlp_rows(w, x, tokens, rows, scratch, plan, width);
    plan.group->gather_columns(rows, tokens, plan.hidden.bounds, out);
    return;
  }
  matmul(mlp_activations(w, x, tokens, scratch, step_rows), tokens, w.down_proj, out, step_rows);
}

namespace {

// One token (decoding): the shared experts and the chosen ones held here as
// two parallel regions — every gate and up projection, then every down
// projection — rather than three fork/joins per expert. Split over ranks, the
// shared experts' activations are exchanged between the two regions and each
// rank computes its rows of their down projection. Returns the routed experts run.
int64_t moe_forward_one_token(const Config& c, const MoeWeights& w, const float* u, const int32_t* chosen,
                              const float* gates, float* out, Scratch& scratch, const ShardPlan& plan) {
  const int64_t d = c.hidden_size, k = c.num_experts_per_tok;
  thread_local std::vector<const MlpWeights*> expert_list;  // grow-only
  thread_local std::vector<float> gate_list;
  thread_local std::vector<MatVec> product_list;
  std::vector<const MlpWeights*>& experts = expert_list;
  std::vector<float>& expert_gates = gate_list;
  std::vector<MatVec>& products = product_list;
  experts.clear(), expert_gates.clear();
  const bool shared = c.n_shared_experts > 0;
  if (shared) experts.push_back(&w.shared_experts);
  for (int64_t i = 0; i < k; ++i)
    if (plan.experts.owns(chosen[i])) experts.push_back(&w.experts[chosen[i]]), expert_gates.push_back(gates[i]);
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
  const float* shared_activations = gate;
  if (shared && plan.split()) {
    float* all = scratch.get(kAllActivations, plan.shared_width.total());
    plan.group->gather_columns(gate, 1, plan.shared_width.bounds, all);
    shared_activations = all;
  }
  products.clear();
  for (int64_t at = 0, i = 0; const MlpWeights* e : experts) {
    products.push_back({&e->down_proj, i == 0 && shared ? shared_activations : gate + at, down + i * d});
    at += e->gate_proj.rows, ++i;
  }
  matvec_many(products.data(), static_cast<int64_t>(products.size()));
  if (!shared)
    std::fill(out, out + d, 0.0f);
  else if (plan.split())
    place_columns(down, 1, plan.hidden.first(plan.rank), plan.hidden.count(plan.rank), d, out);
  else
    std::copy(down, down + d, out);
  const int64_t routed = static_cast<int64_t>(expert_gates.size());
  for (int64_t i = 0; i < routed; ++i) axpy(expert_gates[i], down + (i + (shared ? 1 : 0)) * d, out, d);
  if (plan.split()) plan.group->sum(out, d);
  return routed;
}

// A few tokens (a speculative verification step, a small batch): every chosen expert's gate and
// up projections for each of its tokens in one parallel region, then every down projection in
// another, as moe_forward_one_token does, instead of three fork/joins per expert (a 2-token step
// on V2-Lite shapes ran 1400 of them). Each product is the computation matmul does for these few
// tokens and the results are added to `out` in the per-expert loop's order; only silu_mul may
// round a few values otherwise (its vector/tail split falls elsewhere in the concatenation).
int64_t routed_few_tokens(const MoeWeights& w, int64_t d, const float* u, const ShardPlan& plan,
                          const std::vector<int32_t>& first_assignment, const std::vector<int32_t>& slot_token,
                          const std::vector<float>& slot_gate, float* out, Scratch& scratch) {
  thread_local std::vector<MatVec> product_list;                 // grow-only
  thread_local std::vector<std::pair<int32_t, int32_t>> run_list;  // (expert, slot), in expert order
  std::vector<MatVec>& products = product_list;
  std::vector<std::pair<int32_t, int32_t>>& runs = run_list;
  runs.clear();
  int64_t width = 0;
  for (int64_t e = plan.experts.first(); e < plan.experts.end(); ++e)
    for (int32_t slot = first_assignment[e]; slot < first_assignment[e + 1]; ++slot)
      runs.emplace_back(static_cast<int32_t>(e), slot), width += w.experts[e].gate_proj.rows;
  if (runs.empty()) return 0;
  float* gate = scratch.get(kGate, width);
  float* up = scratch.get(kUp, width);
  float* down = scratch.get(kMlpOutputs, static_cast<int64_t>(runs.size()) * d);
  products.clear();
  for (int64_t at = 0; const auto& [e, slot] : runs) {
    const MlpWeights& expert = w.experts[e];
    products.push_back({&expert.gate_proj, u + slot_token[slot] * d, gate + at});
    products.push_back({&expert.up_proj, u + slot_token[slot] * d, up + at});
    at += expert.gate_proj.rows;
  }
  matvec_many(products.data(), static_cast<int64_t>(products.size()));
  silu_mul(gate, up, width);
  products.clear();
  for (int64_t at = 0, i = 0; const auto& [e, slot] : runs) {
    products.push_back({&w.experts[e].down_proj, gate + at, down + i * d});
    at += w.experts[e].gate_proj.rows, ++i;
  }
  matvec_many(products.data(), static_cast<int64_t>(products.size()));
  for (size_t i = 0; i < runs.size(); ++i)
    axpy(slot_gate[runs[i].second], down + static_cast<int64_t>(i) * d, out + slot_token[runs[i].second] * d, d);
  return static_cast<int64_t>(runs.size());
}

// A prompt's routed experts, in expert order, each split over the threads by
// rows (matmul's own split): for few experts with many tokens each.
int64_t routed_experts_split(const MoeWeights& w, int64_t d, const float* u, const ShardPlan& plan,
                             const std::vector<int32_t>& first_assignment, const std::vector<int32_t>& slot_token,
                             const std::vector<float>& slot_gate, float* out, Scratch& scratch, int64_t tokens) {
  static const ShardPlan whole_expert;  // an expert is never split: it runs whole where it is held
  int64_t routed = 0;
  for (int64_t e = plan.experts.first(); e < plan.experts.end(); ++e) {
    const int64_t begin = first_assignment[e], m = first_assignment[e + 1] - begin;
    if (m == 0) continue;  // no token chose this expert: it costs nothing
    float* inputs = scratch.get(kMlpInputs, m * d);
    float* outputs = scratch.get(kMlpOutputs, m * d);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < d; ++i) inputs[j * d + i] = u[slot_token[begin + j] * d + i];
    mlp_forward(w.experts[e], inputs, m, outputs, scratch, whole_expert, whole_expert.dense_width, tokens);
    for (int64_t j = 0; j < m; ++j) axpy(slot_gate[begin + j], outputs + j * d, out + slot_token[begin + j] * d, d);
    routed += m;
  }
  return routed;
}

// Whether to run each routed expert whole on one thread: with many experts of
// a few dozen tokens each (a prompt on DeepSeek-V2's 64–256 experts) every
// product split over the threads costs fork/joins and serial gathers per
// expert; whole experts handed to whichever thread is free keep every thread
// busy without them. Not when few experts or one big group would leave a
// thread idle at the end (a small model, a rank holding few experts).
bool whole_experts_per_thread(const std::vector<int32_t>& first_assignment, const dist::ExpertPlacement& experts) {
  const int64_t threads = num_threads();
  if (threads <= 1) return false;
  int64_t active = 0, largest = 0, total = 0;
  for (int64_t e = experts.first(); e < experts.end(); ++e) {
    const int64_t m = first_assignment[e + 1] - first_assignment[e];
    active += m > 0, largest = std::max(largest, m), total += m;
  }
  return active >= 4 * threads && largest * threads * 4 <= total;
}

// The routed experts each whole on one thread (the biggest first, so that the
// last ones to finish are small), their outputs per assignment slot; then each
// token adds its gated outputs in expert order, as routed_experts_split does:
// the same bits, whichever thread ran which expert.
int64_t routed_experts_per_thread(const MoeWeights& w, int64_t d, const float* u, const ShardPlan& plan,
                                  const std::vector<int32_t>& first_assignment, const std::vector<int32_t>& slot_token,
                                  const std::vector<float>& slot_gate, float* out, int64_t k) {
  static const ShardPlan whole_expert;
  // Grow-only; the lambdas below run on other threads, so they reach these
  // buffers through references (a thread_local named there is that thread's own).
  thread_local std::vector<float> slot_output_buffer;  // [slot][d]
  thread_local std::vector<int32_t> order_buffer, token_slot_buffer, token_first_buffer;
  std::vector<float>& slot_outputs = slot_output_buffer;
  std::vector<int32_t>& order = order_buffer;
  std::vector<int32_t>& token_slots = token_slot_buffer;  // each token's slots, token by token
  std::vector<int32_t>& token_first = token_first_buffer;  // where each token's slots start
  const int64_t slots = first_assignment[plan.experts.end()] - first_assignment[plan.experts.first()];
  const int64_t base = first_assignment[plan.experts.first()];
  const int64_t tokens = static_cast<int64_t>(slot_token.size()) / k;
  slot_outputs.resize(static_cast<size_t>(slots * d));
  order.clear();
  for (int64_t e = plan.experts.first(); e < plan.experts.end(); ++e)
    if (first_assignment[e + 1] > first_assignment[e]) order.push_back(static_cast<int32_t>(e));
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return first_assignment[a + 1] - first_assignment[a] > first_assignment[b + 1] - first_assignment[b];
  });
  float* const outputs_all = slot_outputs.data();
  parallel_for_each(static_cast<int64_t>(order.size()), [&](int64_t i0, int64_t i1) {
    thread_local Scratch expert_scratch;  // this thread's: matmul runs on the calling thread here
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = order[i], begin = first_assignment[e], m = first_assignment[e + 1] - begin;
      float* inputs = expert_scratch.get(kMlpInputs, m * d);
      for (int64_t j = 0; j < m; ++j) std::copy(u + slot_token[begin + j] * d, u + (slot_token[begin + j] + 1) * d, inputs + j * d);
      mlp_forward(w.experts[e], inputs, m, outputs_all + (begin - base) * d, expert_scratch, whole_expert,
                  whole_expert.dense_width, tokens);
    }
  });
  // Each token's slots in expert order: slots are numbered in expert order.
  token_first.assign(tokens + 1, 0);
  for (int64_t s = base; s < base + slots; ++s) ++token_first[slot_token[s] + 1];
  for (int64_t t = 0; t < tokens; ++t) token_first[t + 1] += token_first[t];
  token_slots.resize(static_cast<size_t>(slots));
  {
    std::vector<int32_t> next(token_first.begin(), token_first.end() - 1);
    for (int64_t s = base; s < base + slots; ++s) token_slots[next[slot_token[s]]++] = static_cast<int32_t>(s);
  }
  parallel_for(tokens, std::max<int64_t>(1, kElementwiseGrain / (k * d)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int32_t i = token_first[t]; i < token_first[t + 1]; ++i) {
        const int32_t s = token_slots[i];
        axpy(slot_gate[s], outputs_all + (s - base) * d, out + t * d, d);
      }
  });
  return slots;
}

}  // namespace

int64_t moe_forward(const Config& c, const MoeWeights& w, const float* u, int64_t tokens, float* out, Scratch& scratch,
                    const ShardPlan& plan) {
  const int64_t d = c.hidden_size, n = c.n_routed_experts, k = c.num_experts_per_tok;

  float* logits = scratch.get(kRouterLogits, tokens * n);
  matmul(u, tokens, w.gate, logits);
  // Grow-only buffers: steady-state decoding runs a layer without allocating.
  thread_local std::vector<int32_t> chosen, first_assignment, slot_token;
  thread_local std::vector<float> gates, slot_gate;
  chosen.resize(tokens * k), gates.resize(tokens * k);
  route_tokens(c, logits, w.e_score_correction_bias.empty() ? nullptr : w.e_score_correction_bias.data(), tokens,
               chosen.data(), gates.data());
  if (tokens == 1) return moe_forward_one_token(c, w, u, chosen.data(), gates.data(), out, scratch, plan);

  // Shared experts: one MLP of width n_shared · moe_intermediate_size (split
  // over ranks: this rank's rows of its output, in place, 0 elsewhere).
  if (c.n_shared_experts > 0 && plan.split()) {
    const int64_t mine = plan.hidden.count(plan.rank);
    float* rows = scratch.get(kDownRows, tokens * mine);
    mlp_rows(w.shared_experts, u, tokens, rows, scratch, plan, plan.shared_width);
    place_columns(rows, tokens, plan.hidden.first(plan.rank), mine, d, out);
  } else if (c.n_shared_experts > 0) {
    mlp_forward(w.shared_experts, u, tokens, out, scratch, plan, plan.shared_width);
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
  const int64_t routed =
      tokens < kGemmMinTokens ? routed_few_tokens(w, d, u, plan, first_assignment, slot_token, slot_gate, out, scratch)
      : whole_experts_per_thread(first_assignment, plan.experts)
          ? routed_experts_per_thread(w, d, u, plan, first_assignment, slot_token, slot_gate, out, k)
          : routed_experts_split(w, d, u, plan, first_assignment, slot_token, slot_gate, out, scratch, tokens);
  if (plan.split()) plan.group->sum(out, tokens * d);
  return routed;
}

}  // namespace dsv2
