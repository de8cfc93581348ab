// Finite-difference checks: each backward kernel, and the whole model's
// gradient of (cross-entropy + balance losses + sequence-wise loss), which has
// no transformers reference.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/config.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "train/training_model.h"

namespace dsv2 {
namespace {

std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Checks d(Σ dy·f(x))/dx against `analytic` by central differences in x.
template <typename F>
void check_op(const std::vector<float>& x, const std::vector<float>& dy, const std::vector<float>& analytic, F f) {
  for (size_t i = 0; i < x.size(); ++i) {
    auto xp = x, xm = x;
    const float h = 1e-3f;
    xp[i] += h, xm[i] -= h;
    const auto yp = f(xp), ym = f(xm);
    double numeric = 0.0;
    for (size_t j = 0; j < dy.size(); ++j) numeric += dy[j] * (double(yp[j]) - ym[j]) / (2 * h);
    EXPECT_NEAR(analytic[i], numeric, 2e-3 * std::max(1.0, std::fabs(numeric))) << "element " << i;
  }
}

TEST(FiniteDifference, RmsNorm) {
  const int64_t n = 12;
  const auto x = random_vector(2 * n, 1), w = random_vector(n, 2), dy = random_vector(2 * n, 3);
  std::vector<float> dx(2 * n, 0.0f), dw(n, 0.0f);
  rmsnorm_backward(x.data(), w.data(), 1e-6f, 2, n, dy.data(), dx.data(), dw.data());
  check_op(x, dy, dx, [&](const std::vector<float>& v) {
    std::vector<float> y(2 * n);
    rmsnorm(v.data(), w.data(), 1e-6f, 2, n, y.data());
    return y;
  });
  check_op(w, dy, dw, [&](const std::vector<float>& v) {
    std::vector<float> y(2 * n);
    rmsnorm(x.data(), v.data(), 1e-6f, 2, n, y.data());
    return y;
  });
}

TEST(FiniteDifference, SiluMul) {
  const auto g = random_vector(16, 4), u = random_vector(16, 5), dy = random_vector(16, 6);
  std::vector<float> dg(16), du(16);
  silu_mul_backward(g.data(), u.data(), dy.data(), 16, dg.data(), du.data());
  check_op(g, dy, dg, [&](std::vector<float> v) {
    silu_mul(v.data(), u.data(), 16);
    return v;
  });
  check_op(u, dy, du, [&](const std::vector<float>& v) {
    auto a = g;
    silu_mul(a.data(), v.data(), 16);
    return a;
  });
}

TEST(FiniteDifference, Softmax) {
  const auto z = random_vector(10, 7), dy = random_vector(10, 8);
  auto p = z;
  softmax(p.data(), 10);
  std::vector<float> dz(10);
  softmax_backward(p.data(), dy.data(), 10, dz.data());
  check_op(z, dy, dz, [&](std::vector<float> v) {
    softmax(v.data(), 10);
    return v;
  });
}

TEST(FiniteDifference, Rope) {
  const auto x = random_vector(8, 9), dy = random_vector(8, 10);
  const float cos[4] = {0.9f, -0.3f, 0.5f, 1.1f}, sin[4] = {0.2f, 0.8f, -0.6f, 0.1f};  // scaled, as YaRN's mscale makes them
  for (bool interleaved : {true, false}) {
    auto dx = dy;
    if (interleaved)
      rope_rotate_backward(dx.data(), cos, sin, 8);
    else
      rope_rotate_half_split_backward(dx.data(), cos, sin, 8);
    check_op(x, dy, dx, [&](std::vector<float> v) {
      if (interleaved)
        rope_rotate(v.data(), cos, sin, 8);
      else
        rope_rotate_half_split(v.data(), cos, sin, 8);
      return v;
    });
  }
}

Config tiny_config(const std::string& method) {
  Config c;
  c.model_type = method == "noaux_tc" ? "deepseek_v3" : "deepseek_v2";
  c.vocab_size = 40, c.hidden_size = 16, c.intermediate_size = 24, c.moe_intermediate_size = 8;
  c.num_hidden_layers = 2, c.num_attention_heads = 2, c.q_lora_rank = 12, c.kv_lora_rank = 8;
  c.qk_nope_head_dim = 4, c.qk_rope_head_dim = 4, c.v_head_dim = 4;
  c.n_routed_experts = 8, c.n_shared_experts = 1, c.num_experts_per_tok = 3, c.first_k_dense_replace = 1;
  c.topk_method = method, c.n_group = 4, c.topk_group = 2, c.routed_scaling_factor = 1.5;
  c.scoring_func = method == "noaux_tc" ? "sigmoid" : "softmax";
  c.norm_topk_prob = method == "noaux_tc";
  c.rope_scaling.type = "yarn", c.rope_scaling.factor = 4, c.rope_scaling.original_max_position_embeddings = 8;
  c.rope_scaling.mscale = 0.707, c.rope_scaling.mscale_all_dim = 0.707;
  return c;
}

class WholeModelFiniteDifference : public testing::TestWithParam<std::string> {};

TEST_P(WholeModelFiniteDifference, ObjectiveGradient) {
  const Config c = tiny_config(GetParam());
  TrainWeights tw(c);
  tw.init(0.3f, 42);
  MoeTrainingOptions o;
  o.alpha_expert = 0.3, o.alpha_device = 0.5, o.alpha_comm = 0.2, o.devices = 4, o.alpha_sequence = 0.4;
  TrainingModel model(tw, o);
  Batch b;
  b.batch = 2, b.seq_len = 6;
  std::mt19937 rng(3);
  for (int i = 0; i < 12; ++i) b.inputs.push_back(rng() % 40), b.targets.push_back(rng() % 40);
  b.droppable.assign(2, 1);
  tw.zero_grads();
  model.run(b, false, true);
  const std::vector<float> analytic = tw.grads;

  // A sample of coordinates in every tensor; routing must not flip under ±h.
  int checked = 0, skipped = 0;
  for (const auto& info : tw.infos()) {
    if (!info.trained) continue;
    for (int s = 0; s < 3; ++s) {
      const int64_t i = info.offset + (rng() % info.size);
      const float saved = tw.values[i], h = 2e-3f;
      tw.values[i] = saved + h;
      const StepResult plus = model.run(b, false, false);
      tw.values[i] = saved - h;
      const StepResult minus = model.run(b, false, false);
      tw.values[i] = saved;
      if (plus.selected != minus.selected) {
        ++skipped;
        continue;
      }
      const double numeric = (plus.objective - minus.objective) / (2 * h);
      EXPECT_NEAR(analytic[i], numeric, 2e-3 + 2e-2 * std::fabs(numeric)) << info.name << " index " << i - info.offset;
      ++checked;
    }
  }
  EXPECT_GT(checked, 3 * 20);
  EXPECT_LT(skipped, 10);
}

INSTANTIATE_TEST_SUITE_P(Routing, WholeModelFiniteDifference, testing::Values("greedy", "group_limited_greedy", "noaux_tc"));

}  // namespace
}  // namespace dsv2
