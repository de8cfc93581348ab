// --repack (Model::repack_for_prompts, ops/repack.h): the shipped dsv2-mini
// with its prompt matrices repacked at load gives the logits of the same
// model packing its panels per call, bit for bit, on prefill (both MLA forms)
// and on the decoding steps after it, as bf16, q8 and q4 weights.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "test_util.h"

namespace dsv2 {
namespace {

std::string shipped_model() { return test::fixture("../../models/dsv2-mini"); }

// Logits of every position of a 70-token prompt, then of 3 tokens decoded one at a time.
std::vector<float> run(Model& model, AttentionPath path) {
  const int64_t vocab = model.config().vocab_size, prompt = 70, steps = 3;
  std::vector<int32_t> ids(prompt + steps);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  LatentCache cache(model.config(), prompt + steps);
  std::vector<float> logits(static_cast<size_t>((prompt + steps) * vocab));
  model.forward(ids.data(), prompt, cache, path, logits.data());
  for (int64_t s = 0; s < steps; ++s)
    model.forward(&ids[prompt + s], 1, cache, AttentionPath::kAbsorbed, logits.data() + (prompt + s) * vocab);
  return logits;
}

TEST(Repack, ModelLogitsAreBitForBitThoseOfPanelsPackedPerCall) {
  for (DType type : {DType::BF16, DType::I8, DType::U8}) {
    SCOPED_TRACE(dtype_name(type));
    Model plain(shipped_model(), type), repacked(shipped_model(), type);
    EXPECT_EQ(repacked.repacked_bytes(), 0);
    const int64_t bytes = repacked.repack_for_prompts();
    EXPECT_EQ(repacked.repacked_bytes(), bytes);
    const bool kernel = type == DType::BF16 ? std::string(gemm_bf16_kernel()) == "avx512-bf16"
                                            : std::string(gemm_q8_kernel()) != "portable";
    if (!kernel) {
      EXPECT_EQ(bytes, 0);  // the paths this CPU runs read rows
      continue;
    }
    // Every layer's attention and FFN matrices, not the embedding or the LM head.
    const WeightMatrix& o_proj = repacked.weights().layers[0].self_attn.o_proj;
    ASSERT_NE(o_proj.panels, nullptr);
    EXPECT_NE(repacked.weights().layers.back().moe.experts.back().down_proj.panels, nullptr);
    EXPECT_EQ(repacked.weights().embed_tokens.panels, nullptr);
    EXPECT_EQ(repacked.weights().lm_head.panels, nullptr);
    EXPECT_GT(bytes, 0);
    for (AttentionPath path : {AttentionPath::kNaive, AttentionPath::kAbsorbed}) {
      const std::vector<float> want = run(plain, path), got = run(repacked, path);
      ASSERT_EQ(want.size(), got.size());
      EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
          << (path == AttentionPath::kNaive ? "naive" : "absorbed");
    }
    EXPECT_EQ(repacked.repack_for_prompts(), 0);  // a second call finds everything repacked
  }
}

TEST(Repack, NeedsWeightsLoadedFromADirectory) {
  Model loaded(shipped_model());
  Model view(loaded.config(), loaded.weights());
  EXPECT_THROW(view.repack_for_prompts(), Error);
}

}  // namespace
}  // namespace dsv2
