// Routing of DeepSeekMoE (DeepSeek-V2 §2.2, DeepSeek-V3 §2.1.2):
//   s = softmax(W_g·u) (V2) or sigmoid(W_g·u) (V3)
//   greedy:               top-k of s
//   group_limited_greedy: experts in n_group groups, a group scores max(s in group);
//                         keep the topk_group best groups, then top-k inside them
//   noaux_tc:             select on s + b (b = e_score_correction_bias); a group scores
//                         the sum of its top-2 biased scores; weights use the unbiased s
//   g = s / Σ_selected s if norm_topk_prob; then g × routed_scaling_factor.
#include "model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "ops/elementwise.h"

namespace dsv2 {

namespace {

// Indices of the `k` largest values, largest first; ties go to the lower index.
void top_k(const float* values, int64_t n, int64_t k, int32_t* out, std::vector<int32_t>& order) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  std::copy(order.begin(), order.begin() + k, out);
}

}  // namespace

void route_tokens(const Config& c, const float* logits, const float* bias, int64_t tokens, int32_t* experts,
                  float* weights) {
  const int64_t n = c.n_routed_experts, k = c.num_experts_per_tok;
  const bool grouped = c.topk_method != "greedy";
  const int64_t per_group = n / c.n_group;
  // Grow-only buffers: steady-state decoding routes without allocating.
  thread_local std::vector<float> scores, choice, group_scores;
  thread_local std::vector<int32_t> order, groups;
  thread_local std::vector<char> keep;
  scores.resize(n), choice.resize(n), group_scores.resize(c.n_group), groups.resize(c.topk_group), keep.resize(c.n_group);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = logits + t * n;
    std::copy(row, row + n, scores.begin());
    if (c.scoring_func == "sigmoid")
      for (auto& s : scores) s = sigmoid(s);
    else
      softmax(scores.data(), n);

    std::copy(scores.begin(), scores.end(), choice.begin());
    if (c.topk_method == "noaux_tc")
      for (int64_t e = 0; e < n; ++e) choice[e] += bias[e];

    if (grouped) {
      for (int64_t g = 0; g < c.n_group; ++g) {
        const float* member = choice.data() + g * per_group;
        if (c.topk_method == "noaux_tc") {
          float first = -std::numeric_limits<float>::infinity(), second = first;
          for (int64_t i = 0; i < per_group; ++i) {
            if (member[i] > first) {
              second = first;
              first = member[i];
            } else if (member[i] > second) {
              second = member[i];
            }
          }
          group_scores[g] = first + second;
        } else {
          group_scores[g] = *std::max_element(member, member + per_group);
        }
      }
      top_k(group_scores.data(), c.n_group, c.topk_group, groups.data(), order);
      // Experts of groups not kept can never be chosen, even against negative biased scores.
      std::fill(keep.begin(), keep.end(), 0);
      for (int32_t g : groups) keep[g] = 1;
      for (int64_t e = 0; e < n; ++e)
        if (!keep[e / per_group]) choice[e] = -std::numeric_limits<float>::infinity();
    }

    int32_t* chosen = experts + t * k;
    float* gate = weights + t * k;
    top_k(choice.data(), n, k, chosen, order);
    float sum = 0.0f;
    for (int64_t i = 0; i < k; ++i) sum += gate[i] = scores[chosen[i]];
    const float norm = c.norm_topk_prob ? 1.0f / (sum + 1e-20f) : 1.0f;
    for (int64_t i = 0; i < k; ++i) gate[i] = gate[i] * norm * static_cast<float>(c.routed_scaling_factor);
  }
}

}  // namespace dsv2
