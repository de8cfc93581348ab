// dsv2 quantize's conversion: the rewritten model must compute what the
// original computes (transformers' reference logits), with float8 block scales
// folded in, shards merged, MTP layers dropped and bf16 rounding exact.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/convert.h"
#include "model/model.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using test::fixture;

std::vector<float> prefill_logits(const std::string& dir, const std::vector<int32_t>& ids) {
  Model model(dir);
  LatentCache cache(model.config(), static_cast<int64_t>(ids.size()));
  std::vector<float> logits(ids.size() * model.config().vocab_size);
  model.forward(ids.data(), static_cast<int64_t>(ids.size()), cache, AttentionPath::kAbsorbed, logits.data());
  return logits;
}

class ConvertToF32 : public testing::TestWithParam<std::string> {};

TEST_P(ConvertToF32, KeepsTransformersLogits) {
  const std::string name = GetParam();
  test::TempDir tmp;
  convert_model_dir(fixture(name), tmp.path("out"), DType::F32);
  const Checkpoint out(tmp.path("out"));
  ASSERT_EQ(out.files().size(), 1u);
  for (const auto& t : out.files()[0]->tensors()) {
    EXPECT_EQ(t.dtype, DType::F32) << t.name;
    EXPECT_EQ(t.name.find("scale_inv"), std::string::npos) << t.name;
  }
  const auto config = nlohmann::json::parse(test::read_bytes(tmp.path("out/config.json")));
  EXPECT_FALSE(config.contains("quantization_config"));
  EXPECT_EQ(config["torch_dtype"], "float32");

  const auto ref = nlohmann::json::parse(test::read_bytes(fixture(name + "/reference.json")));
  const auto logits = prefill_logits(tmp.path("out"), ref["ids"].get<std::vector<int32_t>>());
  const auto expected = test::read_f32(fixture(name + "/prefill_logits.f32"));
  ASSERT_EQ(logits.size(), expected.size());
  const auto diff = test::compare(logits, expected);
  EXPECT_LE(diff.max_abs_diff, 1e-4f * diff.max_abs_ref);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertToF32, testing::Values("v2_lite", "v2_yarn_bf16", "v3_fp8_yarn", "v3_sharded"));

TEST(ConvertToBf16, RoundsLikeTorchAndRoundTripsExactly) {
  test::TempDir tmp;
  // bf16 -> f32 -> bf16 must give back the very bytes of the original matrices.
  convert_model_dir(fixture("v2_yarn_bf16"), tmp.path("f32"), DType::F32);
  convert_model_dir(tmp.path("f32"), tmp.path("bf16"), DType::BF16);
  const Checkpoint original(fixture("v2_yarn_bf16")), again(tmp.path("bf16"));
  int matrices = 0;
  for (const auto& t : again.files()[0]->tensors()) {
    const TensorInfo* o = original.find(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    if (t.shape.size() != 2) continue;
    ASSERT_EQ(t.dtype, DType::BF16) << t.name;
    ASSERT_EQ(o->dtype, DType::BF16) << t.name;
    EXPECT_EQ(0, std::memcmp(t.data, o->data, t.nbytes)) << t.name;
    ++matrices;
  }
  EXPECT_GT(matrices, 10);
  EXPECT_EQ(nlohmann::json::parse(test::read_bytes(tmp.path("bf16/config.json")))["torch_dtype"], "bfloat16");
}

TEST(ConvertToBf16, StaysCloseToFloat32Logits) {
  test::TempDir tmp;
  convert_model_dir(fixture("v2_lite"), tmp.path("bf16"), DType::BF16);
  const auto ref = nlohmann::json::parse(test::read_bytes(fixture("v2_lite/reference.json")));
  const auto ids = ref["ids"].get<std::vector<int32_t>>();
  const auto diff = test::compare(prefill_logits(tmp.path("bf16"), ids), test::read_f32(fixture("v2_lite/prefill_logits.f32")));
  // bf16 keeps 8 significant bits: weights move by up to 2^-9 relative.
  EXPECT_LE(diff.max_abs_diff, 3e-2f * diff.max_abs_ref);
  EXPECT_GT(diff.max_abs_diff, 0.0f);  // the weights really were rounded
  EXPECT_TRUE(std::filesystem::exists(tmp.path("bf16/tokenizer.json")));
}

TEST(Convert, RefusesToOverwriteItsInput) {
  test::TempDir tmp;
  test::copy_model("v2_lite", tmp.path("m"));
  EXPECT_THROW(convert_model_dir(tmp.path("m"), tmp.path("m"), DType::BF16), Error);
  EXPECT_THROW(convert_model_dir(fixture("v2_lite"), tmp.path("x"), DType::F16), Error);
}

}  // namespace
}  // namespace dsv2
