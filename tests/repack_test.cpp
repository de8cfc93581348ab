// --repack (Model::repack_for_prompts, ops/repack.h): the shipped dsv2-mini
// with its prompt matrices repacked at load gives the logits of the same
// model packing its panels per call, bit for bit, on prefill (both MLA forms)
// and on the decoding steps after it, as bf16, q8, q4 and fp8 weights.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/matmul.h"
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
  // q8/q4 twice: widened to bf16 panels (the default where the CPU has AVX512-BF16) and by the integer GEMM
  for (auto [type, integer] : {std::pair{DType::BF16, false}, std::pair{DType::I8, false}, std::pair{DType::I8, true},
                               std::pair{DType::U8, false}, std::pair{DType::U8, true}, std::pair{DType::F8_E4M3, false}}) {
    SCOPED_TRACE(dtype_name(type) + (integer ? " integer GEMM" : ""));
    use_gemm_q8_for_prompts(integer);
    Model plain(shipped_model(), type), repacked(shipped_model(), type);
    EXPECT_EQ(repacked.repacked_bytes(), 0);
    const int64_t bytes = repacked.repack_for_prompts();
    EXPECT_EQ(repacked.repacked_bytes(), bytes);
    const PromptGemm kind = prompt_gemm(plain.weights().layers[0].self_attn.o_proj, 70);
    const bool kernel = kind == PromptGemm::kBf16  ? gemm_bf16_native()
                        : kind == PromptGemm::kQ8 ? std::string(gemm_q8_kernel()) != "portable"
                                                  : false;
    if (!kernel) {
      EXPECT_EQ(bytes, 0);  // the paths this CPU runs read rows
      continue;
    }
    // Every layer's attention and FFN matrices, not the embedding or the LM head.
    const WeightMatrix& o_proj = repacked.weights().layers[0].self_attn.o_proj;
    ASSERT_NE(o_proj.panels, nullptr);
    EXPECT_EQ(o_proj.panel_format, kind == PromptGemm::kBf16 ? PanelFormat::kBf16 : PanelFormat::kQ8);
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
  use_gemm_q8_for_prompts(false);
}

TEST(Repack, NeedsWeightsLoadedFromADirectory) {
  Model loaded(shipped_model());
  Model view(loaded.config(), loaded.weights());
  EXPECT_THROW(view.repack_for_prompts(), Error);
}

}  // namespace
}  // namespace dsv2
