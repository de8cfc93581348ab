// Load-time repacking (Model::repack_for_prompts, ops/repack.h) on the shipped
// dsv2-mini. q8, q4 and fp8 weights keep their rows beside the panels: the
// logits are bit for bit those of the same model packing its panels per call,
// on prefill (both MLA forms) and on the decoding steps after it. bf16 panels
// replace the rows: a prompt's GEMM products are the same bits, while the
// products of a few tokens (decoding, a routed expert holding 1-3 of the
// prompt's tokens) read the panels in their own float32 order, so the logits
// of bf16 models (and of fp8 ones, whose router is bf16) agree within float32
// rounding; in place or with --repack alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

// Within float32 rounding: summation order alone moves these logits by ~1e-6 (measured 2e-6 at most).
void expect_float32_close(const std::vector<float>& want, const std::vector<float>& got) {
  ASSERT_EQ(want.size(), got.size());
  float worst = 0.0f;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - got[i]) / (1.0f + std::fabs(want[i])));
  EXPECT_LT(worst, 1e-4f);
}

TEST(Repack, ModelLogitsAreThoseOfPanelsPackedPerCall) {
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
    EXPECT_EQ(o_proj.products_read_panels(), type == DType::BF16);
    for (AttentionPath path : {AttentionPath::kNaive, AttentionPath::kAbsorbed}) {
      SCOPED_TRACE(path == AttentionPath::kNaive ? "naive" : "absorbed");
      const std::vector<float> want = run(plain, path), got = run(repacked, path);
      ASSERT_EQ(want.size(), got.size());
      if (type == DType::BF16 || type == DType::F8_E4M3)  // (fp8 keeps the router in bf16, as DeepSeek-V3 ships it)
        expect_float32_close(want, got);
      else
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
    }
    EXPECT_EQ(repacked.repack_for_prompts(), 0);  // a second call finds everything repacked
  }
  use_gemm_q8_for_prompts(false);
}

// bf16 panels replace the rows of the matrices mapped from the checkpoint,
// whose pages are released (all but kv_b_proj's, which the absorbed attention
// reads); rows re-encoded at load (--quantize) are this process's own and stay.
TEST(Repack, Bf16PanelsReplaceTheRowsMappedFromTheCheckpoint) {
  Model plain(shipped_model()), repacked(shipped_model()), reencoded(shipped_model(), DType::F32);
  ASSERT_EQ(plain.weights().layers[0].self_attn.o_proj.dtype, DType::BF16);  // as shipped, mapped in place
  const int64_t bytes = repacked.repack_for_prompts();
  if (!gemm_bf16_native()) {
    EXPECT_EQ(bytes, 0);  // gemm_bf16 reads rows here
    return;
  }
  EXPECT_GT(repacked.released_bytes(), bytes / 2);  // every repacked matrix's rows but kv_b_proj's
  EXPECT_LT(repacked.released_bytes(), bytes);
  const auto& attention = repacked.weights().layers[0].self_attn;
  EXPECT_TRUE(attention.o_proj.products_read_panels());
  EXPECT_TRUE(attention.kv_b_proj.products_read_panels());
  EXPECT_TRUE(repacked.weights().layers.back().moe.experts.back().down_proj.products_read_panels());
  // released rows are read again from the file if anything asks
  const WeightMatrix& released = attention.o_proj;
  std::vector<float> row(static_cast<size_t>(released.cols)), want(row.size());
  released.dequantize_row(released.rows - 1, row.data());
  plain.weights().layers[0].self_attn.o_proj.dequantize_row(released.rows - 1, want.data());
  EXPECT_EQ(row, want);
  EXPECT_EQ(reencoded.repack_for_prompts(), 0);  // float32: rows are read
  Model to_bf16(test::fixture("v2_lite"), DType::BF16);  // a float32 checkpoint re-encoded
  EXPECT_GT(to_bf16.repack_for_prompts(), 0);
  EXPECT_TRUE(to_bf16.weights().layers[0].self_attn.o_proj.products_read_panels());
  EXPECT_EQ(to_bf16.released_bytes(), 0);
}

TEST(Repack, NeedsWeightsLoadedFromADirectory) {
  Model loaded(shipped_model());
  Model view(loaded.config(), loaded.weights());
  EXPECT_THROW(view.repack_for_prompts(), Error);
}

}  // namespace
}  // namespace dsv2
