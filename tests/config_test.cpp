// config.json: defaults, both RoPE spellings, and a clear error naming the
// file and field for every invalid value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using nlohmann::json;

json v2_lite_config() { return json::parse(test::read_bytes(test::fixture("v2_lite/config.json"))); }

void expect_invalid(const json& j, std::initializer_list<std::string> needles) {
  try {
    parse_config(j.dump(), "/models/x/config.json");
    FAIL() << "accepted " << j.dump();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("/models/x/config.json"), std::string::npos) << message;
    for (const auto& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
}

TEST(Config, ParsesFixture) {
  const Config c = parse_config(v2_lite_config().dump(), "config.json");
  EXPECT_EQ(c.model_type, "deepseek_v2");
  EXPECT_EQ(c.q_lora_rank, 0);  // null: queries not compressed
  EXPECT_EQ(c.n_routed_experts, 8);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(Config, DeepSeekDefaultsWhenAbsent) {
  const Config v3 = parse_config(R"({"model_type": "deepseek_v3"})", "config.json");
  EXPECT_EQ(v3.n_routed_experts, 256);
  EXPECT_EQ(v3.topk_method, "noaux_tc");
  EXPECT_EQ(v3.scoring_func, "sigmoid");
  EXPECT_DOUBLE_EQ(v3.routed_scaling_factor, 2.5);
  EXPECT_EQ(v3.first_k_dense_replace, 3);
  const Config v2 = parse_config(R"({"model_type": "deepseek_v2", "topk_method": "gready"})", "config.json");
  EXPECT_EQ(v2.topk_method, "greedy");
  EXPECT_EQ(v2.n_routed_experts, 0);  // dense unless experts are configured
}

TEST(Config, MoeLayerFrequency) {
  json j = v2_lite_config();
  j["moe_layer_freq"] = 2;
  j["num_hidden_layers"] = 6;
  const Config c = parse_config(j.dump(), "config.json");
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(1));  // odd layers stay dense
  EXPECT_TRUE(c.is_moe_layer(2));
  EXPECT_FALSE(c.is_moe_layer(3));
}

TEST(Config, RopeParametersAsTransformers5WritesThem) {
  json j = v2_lite_config();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 50000.0}, {"factor", 40.0},
                          {"original_max_position_embeddings", 4096}, {"mscale", 0.707}, {"mscale_all_dim", 0.707}};
  const Config c = parse_config(j.dump(), "config.json");
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope_theta, 50000.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 0.707);
}

TEST(Config, YarnSoftmaxScale) {
  // DeepSeek-V2: factor 40, mscale_all_dim 0.707 -> m = 0.1·0.707·ln 40 + 1;
  // scale = (128 + 64)^-0.5 · m².
  json j = v2_lite_config();
  j["qk_nope_head_dim"] = 128;
  j["qk_rope_head_dim"] = 64;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 40}, {"original_max_position_embeddings", 4096},
                       {"mscale", 0.707}, {"mscale_all_dim", 0.707}, {"beta_fast", 32}, {"beta_slow", 1}};
  const Rope rope(parse_config(j.dump(), "config.json"));
  const double m = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_NEAR(rope.softmax_scale(), m * m / std::sqrt(192.0), 1e-7);
  EXPECT_NEAR(rope.attention_factor(), 1.0, 1e-7);  // mscale == mscale_all_dim
  // Past the correction range the frequencies are interpolated: θ^(-2i/d) / factor.
  EXPECT_NEAR(rope.inv_freq().back(), std::pow(10000.0, -62.0 / 64.0) / 40.0, 1e-12);
  EXPECT_NEAR(rope.inv_freq().front(), 1.0, 1e-7);  // fastest dimension extrapolated
}

TEST(Config, RejectsInvalidValues) {
  auto with = [](const char* field, json value) {
    json j = v2_lite_config();
    j[field] = std::move(value);
    return j;
  };
  expect_invalid(with("hidden_size", -64), {"'hidden_size'", "positive"});
  expect_invalid(with("num_hidden_layers", 0), {"'num_hidden_layers'"});
  expect_invalid(with("kv_lora_rank", -1), {"'kv_lora_rank'"});
  expect_invalid(with("hidden_size", "64"), {"'hidden_size'", "integer"});
  expect_invalid(with("num_experts_per_tok", 9), {"'num_experts_per_tok'", "only 8 routed experts"});
  expect_invalid(with("topk_method", "best"), {"'topk_method'", "best"});
  expect_invalid(with("scoring_func", "relu"), {"'scoring_func'", "relu"});
  expect_invalid(with("model_type", "llama"), {"'model_type'", "llama"});
  expect_invalid(with("qk_rope_head_dim", 7), {"'qk_rope_head_dim'", "even"});
  expect_invalid(with("rms_norm_eps", 0), {"'rms_norm_eps'"});
  expect_invalid(with("hidden_act", "gelu"), {"'hidden_act'"});
  expect_invalid(with("rope_scaling", json{{"type", "dynamic"}, {"factor", 2}}), {"rope_scaling.type", "dynamic"});
  expect_invalid(with("eos_token_id", "x"), {"'eos_token_id'"});

  json grouped = with("topk_method", "group_limited_greedy");
  grouped["n_group"] = 3;  // 8 experts do not split into 3 groups
  grouped["topk_group"] = 1;
  expect_invalid(grouped, {"'n_group'", "does not divide"});
  grouped["n_group"] = 4;
  grouped["topk_group"] = 5;
  expect_invalid(grouped, {"'topk_group'"});
}

TEST(Config, RejectsMalformedJson) {
  EXPECT_THROW(parse_config("{\"model_type\": ", "config.json"), Error);
  EXPECT_THROW(parse_config("[]", "config.json"), Error);
}

}  // namespace
}  // namespace dsv2

namespace dsv2 {
namespace {

// The published sizes: DeepSeek-V2-Lite 15.7B total / 2.4B active, DeepSeek-V2
// 236B / 21B, DeepSeek-V3 671B / 37B (V3's 671B excludes the 14B MTP module).
TEST(Config, ParameterCountsOfPublishedModels) {
  const Config lite = parse_config(R"({"model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048,
      "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
      "q_lora_rank": null, "kv_lora_rank": 512, "n_routed_experts": 64, "n_shared_experts": 2,
      "num_experts_per_tok": 6, "first_k_dense_replace": 1})", "lite.json");
  const ParameterCounts l = count_parameters(lite);
  EXPECT_NEAR(l.total / 1e9, 15.7, 0.05);
  // We count the embedding table as active; V2-Lite's published 2.4B leaves it out (2.66B - 0.21B).
  EXPECT_NEAR((l.active - 102400.0 * 2048) / 1e9, 2.4, 0.06) << l.active;
  const Config v2 = parse_config(R"({"model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 5120,
      "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_hidden_layers": 60, "num_attention_heads": 128,
      "q_lora_rank": 1536, "kv_lora_rank": 512, "n_routed_experts": 160, "n_shared_experts": 2,
      "num_experts_per_tok": 6, "first_k_dense_replace": 1, "n_group": 8, "topk_group": 3,
      "topk_method": "group_limited_greedy"})", "v2.json");
  const ParameterCounts v = count_parameters(v2);
  EXPECT_NEAR(v.total / 1e9, 236, 1.0);
  EXPECT_NEAR(v.active / 1e9, 21, 0.5);
  const ParameterCounts v3 = count_parameters(parse_config(R"({"model_type": "deepseek_v3"})", "v3.json"));
  EXPECT_NEAR(v3.total / 1e9, 671, 1.0);
  EXPECT_NEAR(v3.active / 1e9, 37, 0.6);
}

}  // namespace
}  // namespace dsv2
