// A model directory with a missing or misshapen tensor, a broken index, or a
// float8 weight without scales is rejected with the file and tensor named.
#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/convert.h"
#include "model/model.h"
#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

// Rewrites DIR/FILE, dropping `drop` and giving `reshape` the shape `new_shape`
// (and, if given, the dtype `new_dtype`: the same bytes read as another type).
void rewrite(const std::string& path, const std::string& drop, const std::string& reshape = "",
             std::vector<int64_t> new_shape = {}, std::optional<DType> new_dtype = std::nullopt) {
  std::string copy = path + ".orig";
  fs::rename(path, copy);
  {
    SafetensorsFile in(copy);
    std::vector<TensorToWrite> out;
    for (const auto& t : in.tensors()) {
      if (t.name == drop) continue;
      const bool changed = t.name == reshape;
      out.push_back({t.name, changed && new_dtype ? *new_dtype : t.dtype, changed ? new_shape : t.shape, t.data, t.nbytes});
    }
    write_safetensors(path, out);
  }
  fs::remove(copy);
}

void expect_load_error(const std::string& dir, std::initializer_list<std::string> needles) {
  try {
    Model model(dir);
    FAIL() << "loaded a broken model";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
}

TEST(BadModel, MissingTensor) {
  test::TempDir dir;
  test::copy_model("v2_lite", dir.path("m"));
  rewrite(dir.path("m/model.safetensors"), "model.layers.1.mlp.experts.3.up_proj.weight");
  expect_load_error(dir.path("m"), {"missing tensor 'model.layers.1.mlp.experts.3.up_proj.weight'", "[24, 64]"});
}

TEST(BadModel, WrongShape) {
  test::TempDir dir;
  test::copy_model("v2_lite", dir.path("m"));
  // Same bytes, different shape: only the shape check can catch it.
  rewrite(dir.path("m/model.safetensors"), "", "model.layers.0.self_attn.o_proj.weight", {32, 128});
  expect_load_error(dir.path("m"), {"model.safetensors", "'model.layers.0.self_attn.o_proj.weight'", "[32, 128]",
                                    "expected [64, 64]"});
}

TEST(BadModel, Fp8WithoutScales) {
  test::TempDir dir;
  test::copy_model("v3_fp8_yarn", dir.path("m"));
  rewrite(dir.path("m/model.safetensors"), "model.layers.0.self_attn.q_a_proj.weight_scale_inv");
  expect_load_error(dir.path("m"), {"float8 tensor 'model.layers.0.self_attn.q_a_proj.weight'", "_scale_inv"});
}

TEST(BadModel, Fp8ScalesOfWrongShape) {
  test::TempDir dir;
  test::copy_model("v3_fp8_yarn", dir.path("m"));
  rewrite(dir.path("m/model.safetensors"), "", "model.layers.0.self_attn.q_a_proj.weight_scale_inv", {12});
  expect_load_error(dir.path("m"), {"q_a_proj.weight_scale_inv", "must be F32 of shape [3, 4]"});
}

// q8/q4 block scales are F16 (or, in files written before issue 17, F32) of shape [rows, cols / 32].
TEST(BadModel, QuantizedScalesOfWrongTypeOrShape) {
  test::TempDir dir;
  convert_model_dir(test::fixture("v2_lite"), dir.path("m"), DType::I8);
  const std::string scale = "model.layers.0.self_attn.o_proj.weight_scale";  // [64, 64] q8: scales [64, 2]
  rewrite(dir.path("m/model.safetensors"), "", scale, {64, 2}, DType::BF16);
  expect_load_error(dir.path("m"), {"model.safetensors", "'" + scale + "'", "must be F16 or F32 of shape [64, 2]", "got BF16 [64, 2]"});

  convert_model_dir(test::fixture("v2_lite"), dir.path("n"), DType::I8);
  rewrite(dir.path("n/model.safetensors"), "", scale, {32, 4});
  expect_load_error(dir.path("n"), {"'" + scale + "'", "must be F16 or F32 of shape [64, 2]", "got F16 [32, 4]"});

  convert_model_dir(test::fixture("v2_lite"), dir.path("o"), DType::I8);
  rewrite(dir.path("o/model.safetensors"), scale);
  expect_load_error(dir.path("o"), {"quantized tensor 'model.layers.0.self_attn.o_proj.weight'", "has no '" + scale + "'"});
}

TEST(BadModel, IndexNamesATensorItsShardLacks) {
  test::TempDir dir;
  test::copy_model("v3_sharded", dir.path("m"));
  const std::string index_path = dir.path("m/model.safetensors.index.json");
  auto index = nlohmann::json::parse(test::read_bytes(index_path));
  index["weight_map"]["model.layers.9.bogus.weight"] = "model-00001-of-00003.safetensors";
  test::write_bytes(index_path, index.dump());
  expect_load_error(dir.path("m"), {"model.safetensors.index.json", "model.layers.9.bogus.weight"});
}

TEST(BadModel, MalformedIndex) {
  test::TempDir dir;
  test::copy_model("v3_sharded", dir.path("m"));
  test::write_bytes(dir.path("m/model.safetensors.index.json"), "{\"weight_map\": ");
  expect_load_error(dir.path("m"), {"model.safetensors.index.json", "not valid JSON"});
}

TEST(BadModel, IndexPointingOutsideTheDirectory) {
  test::TempDir dir;
  test::copy_model("v3_sharded", dir.path("m"));
  test::write_bytes(dir.path("m/model.safetensors.index.json"), R"({"weight_map": {"a": "../../etc/passwd"}})");
  expect_load_error(dir.path("m"), {"outside the directory"});
}

TEST(BadModel, TruncatedWeights) {
  test::TempDir dir;
  test::copy_model("v2_lite", dir.path("m"));
  const std::string path = dir.path("m/model.safetensors");
  fs::resize_file(path, fs::file_size(path) / 2);
  expect_load_error(dir.path("m"), {"model.safetensors"});
}

TEST(BadModel, NoWeightsAtAll) {
  test::TempDir dir;
  fs::create_directories(dir.path("m"));
  fs::copy_file(test::fixture("v2_lite/config.json"), dir.path("m/config.json"));
  expect_load_error(dir.path("m"), {"no *.safetensors files"});
}

TEST(BadModel, TokenOutOfVocabulary) {
  Model model(test::fixture("v2_lite"));
  LatentCache cache(model.config(), 4);
  std::vector<float> logits(model.config().vocab_size);
  const int32_t ids[] = {3, static_cast<int32_t>(model.config().vocab_size)};
  EXPECT_THROW(model.forward(ids, 2, cache, AttentionPath::kAbsorbed, logits.data(), true), Error);
}

TEST(BadModel, ContextFull) {
  Model model(test::fixture("v2_lite"));
  LatentCache cache(model.config(), 2);
  std::vector<float> logits(model.config().vocab_size);
  const int32_t ids[] = {3, 4, 5};
  EXPECT_THROW(model.forward(ids, 3, cache, AttentionPath::kAbsorbed, logits.data(), true), Error);
}

}  // namespace
}  // namespace dsv2
