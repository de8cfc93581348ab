// The MTP module against our torch implementation of it on top of transformers'
// main-model hidden states (tools/make_mtp_fixtures.py, tests/fixtures/v3_mtp).
// Tolerance: max |Δlogit| ≤ 1e-4 × max |logit|, as for the main model.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/mtp.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using test::fixture;

struct MtpCase {
  AttentionPath path;
  int64_t prefill;  // MTP rows in the first call; the rest one per call
};

class MtpLogits : public testing::TestWithParam<MtpCase> {};

TEST_P(MtpLogits, MatchReference) {
  const MtpCase& c = GetParam();
  const auto ref = nlohmann::json::parse(test::read_bytes(fixture("v3_mtp/mtp_reference.json")));
  const std::vector<int32_t> ids = ref["ids"].get<std::vector<int32_t>>();
  const int64_t rows = ref["rows"].get<int64_t>();
  Model model(fixture("v3_mtp"));
  const int64_t vocab = model.config().vocab_size, d = model.config().hidden_size;

  // Main-model hidden states h_0 .. h_rows (after model.norm).
  LatentCache cache(model.config(), rows + 1);
  std::vector<float> logits((rows + 1) * vocab), hidden((rows + 1) * d);
  model.forward(ids.data(), rows + 1, cache, c.path, logits.data(), false, hidden.data());

  MtpModule mtp(model);
  auto mtp_cache = mtp.make_cache(rows);
  std::vector<float> got(rows * vocab);
  mtp.forward(hidden.data(), ids.data() + 1, c.prefill, *mtp_cache, c.path, got.data());
  for (int64_t i = c.prefill; i < rows; ++i)
    mtp.forward(hidden.data() + i * d, ids.data() + i + 1, 1, *mtp_cache, c.path, got.data() + i * vocab);
  EXPECT_EQ(mtp_cache->length(), rows);

  const auto expected = test::read_f32(fixture("v3_mtp/mtp_logits.f32"));
  ASSERT_EQ(expected.size(), got.size());
  const auto diff = test::compare(got, expected);
  EXPECT_LE(diff.max_abs_diff, 1e-4f * diff.max_abs_ref) << "max |logit| " << diff.max_abs_ref;
  std::printf("MTP logits: max |diff| %.3g, relative %.3g\n", diff.max_abs_diff, diff.max_abs_diff / diff.max_abs_ref);
}

INSTANTIATE_TEST_SUITE_P(Fixture, MtpLogits,
                         testing::Values(MtpCase{AttentionPath::kNaive, 12}, MtpCase{AttentionPath::kAbsorbed, 12},
                                         MtpCase{AttentionPath::kNaive, 3}, MtpCase{AttentionPath::kAbsorbed, 3}),
                         [](const testing::TestParamInfo<MtpCase>& info) {
                           return std::string(info.param.path == AttentionPath::kNaive ? "naive" : "absorbed") +
                                  (info.param.prefill == 12 ? "_prefill" : "_decode");
                         });

// Constructing the MTP module of `model_dir` fails with an error containing `text`.
void expect_mtp_error(const std::string& model_dir, const std::string& text) {
  Model model(fixture(model_dir));
  try {
    MtpModule mtp(model);
    ADD_FAILURE() << model_dir << ": expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(Mtp, ModelWithoutMtpLayerIsAnError) { expect_mtp_error("v2_lite", "num_nextn_predict_layers"); }

// v3_sharded carries only some tensors of an MTP layer (plain inference must skip them).
TEST(Mtp, IncompleteMtpLayerNamesTheTensor) { expect_mtp_error("v3_sharded", "missing tensor 'model.layers.3."); }

}  // namespace
}  // namespace dsv2
