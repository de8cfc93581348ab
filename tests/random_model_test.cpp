// dsv2 init --like: the published shapes (checked against the parameter counts
// DeepSeek reports: V2-Lite 15.7B total / 2.4B activated, V2 236B / 21B, V3
// 671B / 37B, activated counts excluding the embedding table), and random
// models that load, run, and are reproducible for a seed.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "model/mtp.h"
#include "model/random_model.h"
#include "model/weights.h"
#include "test_util.h"

namespace dsv2 {
namespace {

TEST(RandomModel, PublishedShapesGiveThePublishedParameterCounts) {
  struct Expected {
    const char* name;
    double total_billions, activated_billions;
  };
  for (const Expected& e : {Expected{"deepseek-v2-lite", 15.7, 2.4}, Expected{"deepseek-v2", 236.0, 21.0},
                            Expected{"deepseek-v3", 671.0, 37.0}}) {
    const Config c = published_config(e.name);
    const ParameterCounts counts = count_parameters(c);
    const double embedding = static_cast<double>(c.vocab_size * c.hidden_size);
    EXPECT_NEAR(counts.total / 1e9, e.total_billions, 0.005 * e.total_billions) << e.name;
    EXPECT_NEAR((counts.active - embedding) / 1e9, e.activated_billions, 0.05 * e.activated_billions) << e.name;
  }
  EXPECT_EQ(published_config("deepseek-v3").topk_method, "noaux_tc");
  EXPECT_EQ(published_config("deepseek-v2").topk_method, "group_limited_greedy");
  EXPECT_EQ(published_config("deepseek-v2-lite").q_lora_rank, 0);
  EXPECT_THROW(published_config("deepseek-v4"), std::exception);
}

// The fixture's small V3-shaped config, so that the test writes kilobytes.
Config small_config() { return load_config(test::fixture("v3_fp8_yarn")); }

TEST(RandomModel, WritesLoadableReproducibleModelsInEveryType) {
  test::TempDir tmp;
  for (DType type : {DType::F32, DType::BF16, DType::I8, DType::U8}) {
    const std::string a = tmp.path("a" + dtype_name(type)), b = tmp.path("b" + dtype_name(type)),
                      c = tmp.path("c" + dtype_name(type));
    write_random_model(small_config(), type, a, 7);
    write_random_model(small_config(), type, b, 7);
    write_random_model(small_config(), type, c, 8);
    EXPECT_EQ(test::read_bytes(a + "/model.safetensors"), test::read_bytes(b + "/model.safetensors"));
    EXPECT_NE(test::read_bytes(a + "/model.safetensors"), test::read_bytes(c + "/model.safetensors"));

    Model model(a);
    const std::vector<int32_t> ids{0, 5, 17, 99};
    LatentCache cache(model.config(), 4);
    std::vector<float> logits(4 * model.config().vocab_size);
    model.forward(ids.data(), 4, cache, AttentionPath::kAbsorbed, logits.data());
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));

    // Matrices have the configs' initializer_range as standard deviation.
    const WeightMatrix& w = model.weights().layers[0].self_attn.o_proj;
    std::vector<float> row(w.cols);
    double sum_sq = 0.0;
    for (int64_t r = 0; r < w.rows; ++r) {
      w.dequantize_row(r, row.data());
      for (float x : row) sum_sq += x * x;
    }
    EXPECT_NEAR(std::sqrt(sum_sq / static_cast<double>(w.rows * w.cols)), 0.02, 0.002) << dtype_name(type);
    EXPECT_EQ(model.weights().layers[0].input_layernorm.values[0], 1.0f);
  }
  const auto config = nlohmann::json::parse(test::read_bytes(tmp.path("aU8/config.json")));
  EXPECT_EQ(config["dsv2_quantization"]["type"], "q4");
  EXPECT_EQ(config["model_type"], "deepseek_v3");
}

// A config with an MTP layer gets one (dsv2 init --like deepseek-v3, or --mtp-layers 1): the
// drafter loads it and drafts finite logits.
TEST(RandomModel, WritesTheMtpLayerTheConfigDeclares) {
  test::TempDir tmp;
  Config config = small_config();
  config.num_nextn_predict_layers = 1;
  write_random_model(config, DType::U8, tmp.path("m"), 3);
  Model model(tmp.path("m"));
  MtpModule mtp(model);
  const std::vector<int32_t> ids{0, 5, 17};
  LatentCache cache(model.config(), 3);
  auto mtp_cache = mtp.make_cache(3);
  const int64_t vocab = model.config().vocab_size, d = model.config().hidden_size;
  std::vector<float> logits(3 * vocab), hidden(3 * d), drafted(3 * vocab);
  model.forward(ids.data(), 3, cache, AttentionPath::kAbsorbed, logits.data(), false, hidden.data());
  mtp.forward(hidden.data(), ids.data(), 3, *mtp_cache, AttentionPath::kAbsorbed, drafted.data());
  for (float x : drafted) ASSERT_TRUE(std::isfinite(x));

  config.num_nextn_predict_layers = 0;  // and none when it declares none
  write_random_model(config, DType::U8, tmp.path("plain"), 3);
  EXPECT_THROW(MtpModule{Model(tmp.path("plain"))}, Error);
  const auto r = test::run_dsv2("init --like deepseek-v2-lite --mtp-layers 2 -o " + tmp.path("x"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--mtp-layers"), std::string::npos) << r.err;
}

TEST(RandomModel, CommandLineErrors) {
  test::TempDir tmp;
  auto r = test::run_dsv2("init --like deepseek-v9 -o " + tmp.path("x"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("deepseek-v9"), std::string::npos) << r.err;
  r = test::run_dsv2("init --like deepseek-v2-lite --dtype q3 -o " + tmp.path("x"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--dtype"), std::string::npos) << r.err;
  r = test::run_dsv2("init --like deepseek-v2-lite --layers 99 -o " + tmp.path("x"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--layers"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv2
