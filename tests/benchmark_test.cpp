// dsv2 bench: the bytes a decoded token reads, counted independently from the
// checkpoint's tensor headers, and the command's JSON report.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "io/checkpoint.h"
#include "model/convert.h"
#include "model/model.h"
#include "ops/gemm_q8.h"
#include "runtime/benchmark.h"
#include "test_util.h"

namespace dsv2 {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Weights one token reads, from the safetensors headers: everything the model
// uses except that the embedding contributes one row and routed experts
// contribute k of n.
double expected_weight_bytes(const Model& model) {
  const Config& c = model.config();
  double bytes = 0.0;
  for (const auto& file : model.checkpoint().files())
    for (const auto& t : file->tensors()) {
      const std::string& name = t.name;
      const double n = static_cast<double>(t.nbytes);
      if (contains(name, "layernorm") || contains(name, "norm.weight") || contains(name, "e_score_correction_bias"))
        continue;  // 1-D vectors: negligible and not counted as matrices
      if (contains(name, "layers." + std::to_string(c.num_hidden_layers) + "."))
        continue;  // V3's MTP layer is not run
      if (name == "model.embed_tokens.weight" || name == "model.embed_tokens.weight_scale")  // (q8/q4: its scales too)
        bytes += n / static_cast<double>(c.vocab_size);
      else if (contains(name, ".mlp.experts."))
        bytes += n * static_cast<double>(c.num_experts_per_tok) / static_cast<double>(c.n_routed_experts);
      else
        bytes += n;
    }
  return bytes;
}

TEST(Benchmark, DecodeBytesCountWhatOneTokenReads) {
  for (const char* name : {"v2_lite", "v3_fp8_yarn", "v2_yarn_bf16"}) {
    Model model(test::fixture(name));
    const DecodeBytes b = decode_bytes_per_token(model, 100);
    EXPECT_NEAR(b.weights, expected_weight_bytes(model), 1e-6 * b.weights) << name;
    EXPECT_EQ(b.cache, 100.0 * static_cast<double>(LatentCache::bytes_per_token(model.config()))) << name;
  }
}

// q8/q4 weights: their float16 block scales count 2 bytes each, as the headers
// say; a matrix of an older file with float32 scales counts 4.
TEST(Benchmark, DecodeBytesCountQuantizedScalesAsStored) {
  test::TempDir tmp;
  for (DType type : {DType::I8, DType::U8}) {
    const std::string dir = tmp.path(dtype_name(type));
    convert_model_dir(test::fixture("v2_lite"), dir, type);
    Model model(dir);
    ASSERT_EQ(model.weights().lm_head.scale_dtype, DType::F16);
    const DecodeBytes b = decode_bytes_per_token(model, 1);
    EXPECT_NEAR(b.weights, expected_weight_bytes(model), 1e-6 * b.weights) << dtype_name(type);
  }
  WeightMatrix m;  // 3 rows of 64 q8 values: 2 blocks a row
  m.dtype = DType::I8, m.rows = 3, m.cols = 64, m.block_rows = 1, m.block_cols = 32;
  const float scales[6] = {};
  m.data = reinterpret_cast<const std::byte*>(scales), m.scale_inv = scales;
  m.scale_dtype = DType::F32;
  EXPECT_EQ(m.bytes(), 3u * 64 + 6 * 4);
  m.scale_dtype = DType::F16;
  EXPECT_EQ(m.bytes(), 3u * 64 + 6 * 2);
}

// The prefill FLOP count from the fixture's config.json numbers, worked by hand:
// hidden 64, 4 heads (d_n 16, d_v 16, d_R 8), d_c 32, no q compression, layer 0
// dense (width 96), layers 1-2 MoE (router 8 experts, 2 shared + 3 of 8 routed
// of width 24), vocabulary 512. Only the last token's logits are read, so
// layer 2's FFN runs for that token alone.
TEST(Benchmark, PrefillFlopsFromTheConfig) {
  Model model(test::fixture("v2_lite"));
  const double attention = 64.0 * 4 * 24 /*q_proj*/ + 64.0 * 40 /*kv_a*/ + 32.0 * 4 * 32 /*kv_b*/ + 4.0 * 16 * 64 /*o*/;
  const double dense = 3.0 * 64 * 96, moe = 8.0 * 64 + 3.0 * 64 * 48 + 3.0 * 3.0 * 64 * 24;
  const double per_token = 3 * attention + dense + 2 * moe;
  const double p = 10, absorbed = 3.0 * 4 * (2 * 32 + 8) * p * (p + 1) / 2, naive = 3.0 * 4 * (16 + 8 + 16) * p * (p + 1) / 2;
  const double a = prefill_flops(model, 10, AttentionPath::kAbsorbed), n = prefill_flops(model, 10, AttentionPath::kNaive);
  EXPECT_NEAR(a, 2.0 * (per_token * p - moe * (p - 1) + 512.0 * 64 + absorbed), 1e-9 * a);
  EXPECT_NEAR(n, 2.0 * (per_token * p - moe * (p - 1) + 512.0 * 64 + naive), 1e-9 * n);
}

// Which MLA form a call takes, counted by hand for DeepSeek-V2-Lite's shapes
// (d_c 512, d_n 128, d_R 64, d_v 128; per head and query or position:
// absorbing 2·512·128, expanding 512·256; per pair 1088 absorbed, 320 naive).
TEST(Benchmark, AttentionPathIsTheOneWithFewerMultiplyAdds) {
  Config c;
  c.kv_lora_rank = 512, c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.v_head_dim = 128;
  c.num_hidden_layers = 1, c.num_attention_heads = 16, c.max_position_embeddings = 8192;
  LatentCache cache(c, 8192);
  const auto path = [&](int64_t cached, int64_t tokens) {
    cache.set_length(cached);
    return choose_attention_path(c, {SequenceSpan{&cache, 0, tokens}});
  };
  // From an empty cache: naive 131072·T + 320·T(T+1)/2 < absorbed 131072·T + 1088·T(T+1)/2 once T >= 1
  // (one token: 131072 + 320 against 131072 + 1088).
  EXPECT_EQ(path(0, 1), AttentionPath::kNaive);
  EXPECT_EQ(path(0, 512), AttentionPath::kNaive);
  // Decoding after 100 cached: naive 101·131072 + 101·320 against 131072 + 101·1088.
  EXPECT_EQ(path(100, 1), AttentionPath::kAbsorbed);
  // A chunk of T after N cached: naive iff (N + T)·131072 + 320·P < T·131072 + 1088·P, P = T·N + T(T+1)/2.
  // N = 4000, T = 300: 563.6M + 398.4M = 962.0M against 39.3M + 1354.7M = 1394.0M -> naive.
  EXPECT_EQ(path(4000, 300), AttentionPath::kNaive);
  // N = 4000, T = 100: 537.4M + 129.6M = 667.0M against 13.1M + 440.7M = 453.8M -> absorbed.
  EXPECT_EQ(path(4000, 100), AttentionPath::kAbsorbed);
  // Past 1 GiB of expanded keys and values (16 heads · 256 floats = 16 KiB a position: 65536 positions) absorbed.
  // (The choice reads only the cache's length, so the span may pass its capacity here.)
  EXPECT_EQ(path(0, 65536), AttentionPath::kNaive);
  EXPECT_EQ(path(0, 65537), AttentionPath::kAbsorbed);
}

TEST(Benchmark, JsonReportIsComplete) {
  const auto r = test::run_dsv2("bench -m " + test::fixture("v2_lite") + " --prompt 8 --gen 4 --ctx 20 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], 8);
  EXPECT_EQ(j["generated_tokens"], 4);
  EXPECT_EQ(j["context"], 20);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["activation_terms"], 2);
  EXPECT_EQ(j["prompt_gemm"], "float32");  // float32 weights
  EXPECT_EQ(j["repacked_bytes"], 0);
  EXPECT_EQ(j["released_bytes"], 0);
  EXPECT_EQ(j["warmup"], false);
  for (const char* key : {"prefill_tokens_per_s", "prefill_flops_per_s", "decode_tokens_per_s", "bandwidth_bytes_per_s", "roofline_tokens_per_s",
                          "roofline_share", "weight_bytes_per_token", "cache_bytes_per_token", "peak_rss_bytes",
                          "fp32_fma_peak_flops_per_s", "prefill_peak_share"})
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  // the fixture's weights are not q8/q4: prefill is measured against the float32 FMA peak
  EXPECT_EQ(j["prefill_peak_kind"].get<std::string>().rfind("fp32 fma", 0), 0u) << j["prefill_peak_kind"];
  EXPECT_DOUBLE_EQ(j["prefill_peak_share"].get<double>(),
                   j["prefill_flops_per_s"].get<double>() / j["fp32_fma_peak_flops_per_s"].get<double>());
}

// bf16 weights prefill a prompt of >= kGemmBf16MinTokens through vdpbf16ps where the CPU has it,
// and so do q8 weights, widened to bf16, unless --activation-terms asks for the integer GEMM:
// their share is of the bf16 dot-product peak.
TEST(Benchmark, Bf16PrefillIsMeasuredAgainstTheBf16Peak) {
  for (const char* quantize : {"", " --quantize q8"}) {
    SCOPED_TRACE(quantize);
    const auto r =
        test::run_dsv2("bench -m " + test::fixture("v2_yarn_bf16") + quantize + " --prompt 40 --gen 2 -t 1 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    if (j["bf16_dot_peak_flops_per_s"].get<double>() == 0.0) GTEST_SKIP() << "no AVX512-BF16 here";
    EXPECT_EQ(j["prompt_gemm"], "bf16");
    EXPECT_EQ(j["prefill_peak_kind"], "bf16 dot vdpbf16ps");

    EXPECT_DOUBLE_EQ(j["prefill_peak_share"].get<double>(),
                     j["prefill_flops_per_s"].get<double>() / j["bf16_dot_peak_flops_per_s"].get<double>());
  }
}

// q8 weights prefill through the integer GEMM: their share is of the int8 dot-product peak.
TEST(Benchmark, QuantizedPrefillIsMeasuredAgainstTheInt8Peak) {
  const auto r = test::run_dsv2("bench -m " + test::fixture("v2_lite") +
                                " --quantize q8 --activation-terms 1 --repack --warmup --prompt 8 --gen 2 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["activation_terms"], 1);
  EXPECT_EQ(j["prompt_gemm"], "int8");
  EXPECT_EQ(j["warmup"], true);
  // --repack: the q8 matrices' panels (all but the embedding and LM head) where a kernel reads panels
  if (std::string(gemm_q8_kernel()) != "portable") {
    EXPECT_GT(j["repacked_bytes"].get<int64_t>(), 0);
  }
  if (j["int8_dot_peak_ops_per_s"].get<double>() == 0.0) GTEST_SKIP() << "no int8 dot-product instruction measured here";
  EXPECT_EQ(j["prefill_peak_kind"].get<std::string>().rfind("int8 ", 0), 0u) << j["prefill_peak_kind"];
  EXPECT_DOUBLE_EQ(j["prefill_peak_share"].get<double>(),
                   j["prefill_flops_per_s"].get<double>() / j["int8_dot_peak_ops_per_s"].get<double>());
}

TEST(Benchmark, BadOptionsFailWithOneLine) {
  const auto r = test::run_dsv2("bench -m " + test::fixture("v2_lite") + " --gen 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--gen"), std::string::npos) << r.err;
  const auto terms = test::run_dsv2("bench -m " + test::fixture("v2_lite") + " --activation-terms 3");
  EXPECT_EQ(terms.exit_code, 2);
  EXPECT_NE(terms.err.find("--activation-terms: must be 1 or 2"), std::string::npos) << terms.err;
  EXPECT_EQ(std::count(terms.err.begin(), terms.err.end(), '\n'), 1) << terms.err;
}

}  // namespace
}  // namespace dsv2
