// q8 and q4 models (dsv2 quantize --type q8|q4): the stored format is what
// docs/FORMATS.md says, and the quantized model's next-token distributions stay
// close to the bf16 model it came from (KL divergence and top-1 agreement on
// English and Chinese text with the shipped, trained dsv2-mini), through both
// the prefill (GEMM) and the one-token (integer kernel) paths.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <filesystem>
#include <cstdio>
#include <random>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/convert.h"
#include "core/parallel.h"
#include "model/model.h"
#include "ops/gemm_q8.h"
#include "ops/matmul.h"
#include "ops/kernels.h"
#include "ops/amx.h"
#include "ops/gemm_bf16.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace dsv2 {
namespace {

// English and Chinese text for the agreement tests.
const char* const kText =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness. The old man looked at the sea and thought of the long winter. "
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。";

std::string shipped_model() { return test::fixture("../../models/dsv2-mini"); }

std::vector<float> all_logits(Model& model, const std::vector<int32_t>& ids, int64_t prefill,
                              CacheType cache_type = CacheType::kF32, AttentionPath path = AttentionPath::kAbsorbed) {
  const int64_t vocab = model.config().vocab_size, total = static_cast<int64_t>(ids.size());
  LatentCache cache(model.config(), total, 0, cache_type);
  std::vector<float> logits(static_cast<size_t>(total * vocab));
  model.forward(ids.data(), prefill, cache, path, logits.data());
  for (int64_t t = prefill; t < total; ++t) model.forward(&ids[t], 1, cache, path, logits.data() + t * vocab);
  return logits;
}

struct Agreement {
  double mean_kl = 0.0;  // KL(reference || quantized), nats per position
  double top1 = 0.0;     // share of positions whose argmax agrees
};

Agreement agreement(const std::vector<float>& ref, const std::vector<float>& q, int64_t vocab) {
  const int64_t rows = static_cast<int64_t>(ref.size()) / vocab;
  Agreement a;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = ref.data() + r * vocab;
    const float* y = q.data() + r * vocab;
    double mx = x[0], my = y[0];
    int64_t ax = 0, ay = 0;
    for (int64_t i = 1; i < vocab; ++i) {
      if (x[i] > mx) mx = x[i], ax = i;
      if (y[i] > my) my = y[i], ay = i;
    }
    double zx = 0.0, zy = 0.0;
    for (int64_t i = 0; i < vocab; ++i) zx += std::exp(x[i] - mx), zy += std::exp(y[i] - my);
    double kl = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double lp = x[i] - mx - std::log(zx), lq = y[i] - my - std::log(zy);
      kl += std::exp(lp) * (lp - lq);
    }
    a.mean_kl += kl / static_cast<double>(rows);
    a.top1 += (ax == ay ? 1.0 : 0.0) / static_cast<double>(rows);
  }
  return a;
}

TEST(QuantizedFormat, StoresBlocksOf32WithScalesAndKeepsOddWidthsInBf16) {
  test::TempDir tmp;
  convert_model_dir(test::fixture("v2_lite"), tmp.path("q4"), DType::U8);
  const Checkpoint original(test::fixture("v2_lite")), q4(tmp.path("q4"));
  int quantized = 0, kept = 0;
  for (const auto& t : original.files()[0]->tensors()) {
    if (t.shape.size() != 2 || t.name.find("layers.2.") != std::string::npos) continue;  // (no MTP layer here)
    const TensorInfo* w = q4.find(t.name);
    ASSERT_NE(w, nullptr) << t.name;
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if (t.name.size() > 16 && t.name.substr(t.name.size() - 16) == ".mlp.gate.weight") {  // the router
      EXPECT_EQ(w->dtype, DType::F32) << t.name;
      EXPECT_EQ(q4.find(t.name + "_scale"), nullptr) << t.name;
      ++kept;
      continue;
    }
    if (cols % 32 != 0) {  // e.g. the experts' down_proj (moe_intermediate_size 24)
      EXPECT_EQ(w->dtype, DType::BF16) << t.name;
      EXPECT_EQ(q4.find(t.name + "_scale"), nullptr) << t.name;
      ++kept;
      continue;
    }
    const bool embedding_or_head = t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight";
    const TensorInfo* s = q4.find(t.name + "_scale");
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->dtype, DType::F16);  // IEEE half since issue 17 (float32 before)
    EXPECT_EQ(s->shape, (std::vector<int64_t>{rows, cols / 32})) << t.name;
    ASSERT_EQ(t.dtype, DType::F32);
    const auto* f = reinterpret_cast<const float*>(t.data);
    const auto* scale = reinterpret_cast<const uint16_t*>(s->data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < cols / 32; ++b) {
        // Every value decodes to within half a step of the original; the step
        // is max|w| of the block over 127 (q8) or 7 (q4).
        float amax = 0.0f;
        for (int64_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(f[r * cols + b * 32 + j]));
        const float step = f16_to_float(scale[r * (cols / 32) + b]);
        // float16's relative rounding is at most 2^-11 (these weights' scales are normal halves)
        EXPECT_NEAR(step, amax / (embedding_or_head ? 127.0f : 7.0f), std::ldexp(step, -11)) << t.name;
        for (int64_t j = 0; j < 32; ++j) {
          float decoded;
          if (embedding_or_head) {
            ASSERT_EQ(w->dtype, DType::I8) << t.name;
            decoded = step * static_cast<float>(reinterpret_cast<const int8_t*>(w->data)[r * cols + b * 32 + j]);
          } else {
            ASSERT_EQ(w->dtype, DType::U8) << t.name;
            ASSERT_EQ(w->shape, (std::vector<int64_t>{rows, cols / 2})) << t.name;
            const uint8_t byte = reinterpret_cast<const uint8_t*>(w->data)[r * cols / 2 + b * 16 + j % 16];
            decoded = step * static_cast<float>((j < 16 ? byte & 0xF : byte >> 4) - 8);
          }
          EXPECT_LE(std::fabs(decoded - f[r * cols + b * 32 + j]), 0.5f * step * 1.0001f + 1e-7f) << t.name;
        }
      }
    ++quantized;
  }
  EXPECT_GT(quantized, 5);
  EXPECT_GT(kept, 0);
  const auto config = nlohmann::json::parse(test::read_bytes(tmp.path("q4/config.json")));
  EXPECT_EQ(config["dsv2_quantization"]["type"], "q4");
  EXPECT_EQ(config["dsv2_quantization"]["scale_dtype"], "float16");
}

// Rewrites the q8/q4 directory `dir` (converted from the float32 fixture
// `original`) with float32 "<name>_scale" tensors, as dsv2 wrote them before
// issue 17: each quantized matrix re-encoded from the original weights with
// float32 scales (encode_row's float overload, which the latent cache still
// uses). widen_only: keep the float16 file's values and scales, only widened to
// float32 (exactly representable), for a model equal to the float16 one.
void rewrite_with_f32_scales(const std::string& original, const std::string& dir, bool widen_only) {
  const Checkpoint source(original);
  const std::string path = dir + "/model.safetensors";
  std::deque<std::vector<std::byte>> storage;  // (a deque: references to earlier entries stay valid)
  {
    const SafetensorsFile in(path);
    std::vector<TensorToWrite> out;
    for (const auto& t : in.tensors()) {
      const bool has_scales = in.find(t.name + "_scale") != nullptr;
      const bool is_scale = t.name.size() > 6 && t.name.substr(t.name.size() - 6) == "_scale";
      if (!has_scales && !is_scale) {
        out.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
        continue;
      }
      if (is_scale) continue;  // written with its matrix
      const TensorInfo& h = *in.find(t.name + "_scale");
      EXPECT_EQ(h.dtype, DType::F16);
      const int64_t rows = h.shape[0], blocks = h.shape[1], cols = blocks * kQuantBlock;
      auto& values = storage.emplace_back(t.data, t.data + t.nbytes);
      auto& scales = storage.emplace_back(static_cast<size_t>(rows * blocks) * sizeof(float));
      auto* f32 = reinterpret_cast<float*>(scales.data());
      const auto* f16 = reinterpret_cast<const uint16_t*>(h.data);
      if (widen_only) {
        for (int64_t i = 0; i < rows * blocks; ++i) f32[i] = f16_to_float(f16[i]);
      } else {
        const TensorInfo* w = source.find(t.name);
        EXPECT_TRUE(w && w->dtype == DType::F32) << t.name;
        const auto* weights = reinterpret_cast<const float*>(w->data);
        const size_t row_bytes = t.nbytes / static_cast<size_t>(rows);
        for (int64_t r = 0; r < rows; ++r)
          encode_row(t.dtype, weights + r * cols, cols, values.data() + r * row_bytes, f32 + r * blocks);
      }
      out.push_back({t.name, t.dtype, t.shape, values.data(), values.size()});
      out.push_back({h.name, DType::F32, h.shape, scales.data(), scales.size()});
    }
    write_safetensors(path + ".new", out);
  }
  std::filesystem::rename(path + ".new", path);
}

// q8/q4 files written before issue 17 (float32 block scales) still load, and
// give the logits they gave then: the fixtures are `dsv2 logits --ids
// "<kOldFileIds>" --prefill 8` of the binary before float16 scales on
// `dsv2 quantize --type q8|q4` of tests/fixtures/v2_lite, whose tensors
// rewrite_with_f32_scales reproduces (the same encoding), so on the CPU that
// made them they agree bit for bit. Elsewhere (another CPU, whose one-token
// kernels sum in another order, or the sanitizer build) a router score of this
// random fixture can tie-break the other way and move logits by ~1%: the bound
// is what tells an old file read right from one whose scales are misread (the
// logits of wrong scales are off by their whole size). Prefill (8 tokens) runs
// the integer GEMM, the 4 later tokens the one-token kernels.
TEST(QuantizedModel, Float32ScaleFilesGiveTheLogitsTheyGaveBefore) {
  const std::vector<int32_t> ids{0, 17, 254, 3, 99, 400, 12, 77, 300, 5, 511, 42};
  for (const auto& [type, fixture] : {std::pair{DType::I8, "v2_lite/q8_f32_scales_logits.f32"},
                                      std::pair{DType::U8, "v2_lite/q4_f32_scales_logits.f32"}}) {
    SCOPED_TRACE(dtype_name(type));
    test::TempDir tmp;
    convert_model_dir(test::fixture("v2_lite"), tmp.path("q"), type);
    rewrite_with_f32_scales(test::fixture("v2_lite"), tmp.path("q"), false);
    Model model(tmp.path("q"));
    EXPECT_EQ(model.weights().lm_head.dtype, DType::I8);
    EXPECT_EQ(model.weights().lm_head.scale_dtype, DType::F32);
    const auto got = all_logits(model, ids, 8);
    const auto want = test::read_f32(test::fixture(fixture));
    ASSERT_EQ(got.size(), want.size());
    const test::Diff d = test::compare(got, want);
    std::printf("[ f32 scales ] %s: max |Δlogit| %g of %g against the logits before float16 scales (%s)\n",
                type == DType::I8 ? "q8" : "q4", d.max_abs_diff, d.max_abs_ref, got == want ? "bit for bit" : "not bit for bit");
    double mean_abs_diff = 0.0;
    for (size_t i = 0; i < got.size(); ++i) mean_abs_diff += std::fabs(got[i] - want[i]) / static_cast<double>(got.size());
    std::printf("[ f32 scales ] mean |Δlogit| %g\n", mean_abs_diff);
    EXPECT_LE(d.max_abs_diff, 0.05f * d.max_abs_ref);
    EXPECT_LE(mean_abs_diff, 5e-3 * d.max_abs_ref);
  }
}

// The float16 and the float32 scale paths compute the same thing: a q8/q4
// model and the same model with its float16 scales widened to float32 give
// identical logits, bit for bit, through prefill and one-token steps.
TEST(QuantizedModel, Float16ScalesGiveWhatTheirFloat32ValuesGive) {
  const std::vector<int32_t> ids{0, 17, 254, 3, 99, 400, 12, 77, 300, 5, 511, 42};
  for (DType type : {DType::I8, DType::U8}) {
    test::TempDir tmp;
    convert_model_dir(test::fixture("v2_lite"), tmp.path("f16"), type);
    convert_model_dir(test::fixture("v2_lite"), tmp.path("f32"), type);
    rewrite_with_f32_scales(test::fixture("v2_lite"), tmp.path("f32"), true);
    Model half(tmp.path("f16")), single(tmp.path("f32"));
    EXPECT_EQ(half.weights().lm_head.scale_dtype, DType::F16);
    EXPECT_EQ(single.weights().lm_head.scale_dtype, DType::F32);
    EXPECT_EQ(all_logits(half, ids, 8), all_logits(single, ids, 8)) << dtype_name(type);
  }
}

// fp8 is DeepSeek-V3's release layout: e4m3 matrices with float32
// "<name>_scale_inv" [⌈rows/128⌉, ⌈cols/128⌉], embedding / LM head / router in
// bfloat16, and the quantization_config transformers and V3 tools read.
TEST(QuantizedFormat, Fp8IsDeepSeekV3Layout) {
  test::TempDir tmp;
  convert_model_dir(test::fixture("v2_lite"), tmp.path("fp8"), DType::F8_E4M3);
  const Checkpoint original(test::fixture("v2_lite")), fp8(tmp.path("fp8"));
  int quantized = 0;
  for (const auto& t : original.files()[0]->tensors()) {
    if (t.shape.size() != 2 || t.name.find("layers.2.") != std::string::npos) continue;
    const TensorInfo* w = fp8.find(t.name);
    ASSERT_NE(w, nullptr) << t.name;
    EXPECT_EQ(w->shape, t.shape) << t.name;
    const bool kept = t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight" ||
                      t.name.find(".mlp.gate.weight") != std::string::npos;
    EXPECT_EQ(w->dtype, kept ? DType::BF16 : DType::F8_E4M3) << t.name;
    const TensorInfo* s = fp8.find(t.name + "_scale_inv");
    if (kept) {
      EXPECT_EQ(s, nullptr) << t.name;
      continue;
    }
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->shape, (std::vector<int64_t>{(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128})) << t.name;
    ++quantized;
  }
  EXPECT_GT(quantized, 5);
  const auto config = nlohmann::json::parse(test::read_bytes(tmp.path("fp8/config.json")));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "fp8");
  EXPECT_EQ(config["quantization_config"]["fmt"], "e4m3");
  EXPECT_EQ(config["quantization_config"]["weight_block_size"], nlohmann::json({128, 128}));
}

TEST(QuantizedModel, StaysCloseToBf16OnRealText) {
  const auto tokenizer = Tokenizer::load(shipped_model());
  const auto ids = tokenizer->encode(kText);
  Model reference(shipped_model());
  const int64_t vocab = reference.config().vocab_size;
  // The bf16 model one token at a time: float32 activations (bf16 prefill rounds
  // them to bf16, ops/gemm_bf16.h), so the figures below are the quantization's
  // own error, not the baseline's activation rounding.
  const auto ref_logits = all_logits(reference, ids, 1);
  for (auto [type, max_kl, min_top1] :
       {std::tuple{DType::I8, 0.002, 0.97}, std::tuple{DType::U8, 0.02, 0.9}, std::tuple{DType::F8_E4M3, 0.002, 0.97}}) {
    test::TempDir tmp;
    convert_model_dir(shipped_model(), tmp.path("q"), type);
    Model quantized(tmp.path("q"));
    // Batched prefill widens the weights to bf16 where the CPU has AVX512-BF16
    // (ops/gemm_bf16.h; elsewhere q8/q4 take the integer GEMM with two int8
    // terms per activation and fp8 float32 panels); one-token steps quantize the
    // activation to 8 bits once and use the integer row kernels. Both must stay
    // close to bf16, and to each other.
    const auto batched = all_logits(quantized, ids, static_cast<int64_t>(ids.size()));
    const auto stepped = all_logits(quantized, ids, 1);
    const Agreement a = agreement(ref_logits, batched, vocab), b = agreement(ref_logits, stepped, vocab),
                    between = agreement(batched, stepped, vocab);
    std::printf("[ quantized ] %s vs bf16 over %zu positions: mean KL %.6f nats, top-1 %.1f%% (prefill); "
                "%.6f, %.1f%% (one token at a time; %.6f from prefill)\n",
                type == DType::I8 ? "q8" : type == DType::U8 ? "q4" : "fp8", ids.size(), a.mean_kl, 100.0 * a.top1, b.mean_kl, 100.0 * b.top1,
                between.mean_kl);
    EXPECT_LT(a.mean_kl, max_kl);
    EXPECT_GT(a.top1, min_top1);
    EXPECT_LT(b.mean_kl, max_kl);
    EXPECT_GT(b.top1, min_top1);
    EXPECT_LT(between.mean_kl, 0.001);  // 8-bit activations: the integer path's only extra error
    if (type == DType::F8_E4M3) continue;
    // --activation-terms 2 and 1: the integer GEMM, the prefill's activations in two int8 terms, or in one
    // as one-token steps and llama.cpp have them. Widened to bf16 must be no further from bf16 than two terms.
    use_gemm_q8_for_prompts(true);
    const auto two_terms = all_logits(quantized, ids, static_cast<int64_t>(ids.size()));
    set_gemm_q8_activation_terms(1);
    const auto one_term = all_logits(quantized, ids, static_cast<int64_t>(ids.size()));
    set_gemm_q8_activation_terms(2);
    use_gemm_q8_for_prompts(false);
    const Agreement c = agreement(ref_logits, one_term, vocab), d = agreement(ref_logits, two_terms, vocab);
    std::printf("[ quantized ] %s prefill by the integer GEMM: mean KL %.6f nats, top-1 %.1f%% (two int8 terms per "
                "activation); %.6f, %.1f%% (one)\n",
                type == DType::I8 ? "q8" : "q4", d.mean_kl, 100.0 * d.top1, c.mean_kl, 100.0 * c.top1);
    EXPECT_LT(c.mean_kl, max_kl);
    EXPECT_GT(c.top1, min_top1);
    EXPECT_LE(a.mean_kl, d.mean_kl * 1.05);
  }
}

// bf16 prefill (ops/gemm_bf16.h) rounds the activations of every product to
// bf16 (relative error <= 2^-9, uniform: RMS 2^-9/sqrt(3) = 0.0011), where the
// one-token path keeps them float32. The q8 weights' rounding (RMS ~0.006 of a
// weight, absmax/127 per block of 32) moved prefill by a mean KL of 0.00005;
// KL grows with the square of the logits' perturbation, so the activation
// rounding should give ~(0.0011/0.006)^2 · 0.00005 ≈ 2e-6. The bound allows 5x.
TEST(Bf16Prefill, AgreesWithFloat32ActivationsOnRealText) {
  const auto tokenizer = Tokenizer::load(shipped_model());
  const auto ids = tokenizer->encode(kText);
  Model model(shipped_model());
  const int64_t vocab = model.config().vocab_size;
  const auto stepped = all_logits(model, ids, 1);
  const auto prefilled = all_logits(model, ids, static_cast<int64_t>(ids.size()));
  const Agreement a = agreement(stepped, prefilled, vocab);
  const test::Diff d = test::compare(prefilled, stepped);
  std::printf("[ bf16 ] prefill (bf16 activations) vs one token at a time (float32) over %zu positions: mean KL "
              "%.7f nats, top-1 %.1f%%, max |Δlogit| %.5f of %.3f\n",
              ids.size(), a.mean_kl, 100.0 * a.top1, d.max_abs_diff, d.max_abs_ref);
  EXPECT_LT(a.mean_kl, 1e-5);
  EXPECT_GT(a.top1, 0.98);
}

// Long contexts: the absorbed path attends in tiles of 128 cached positions
// with an online softmax, and a decoding row's positions are split over the
// threads and merged; prefill masks tiles per row. The naive path (the cache
// expanded into per-head keys and values, tiles of 64 rows of one head; itself
// checked against transformers) must give the same logits at every position.
TEST(LongContext, TiledAbsorbedAttentionMatchesNaive) {
  Model model(shipped_model());
  const int64_t vocab = model.config().vocab_size, total = 560, prefill = 530;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(total);
  for (auto& id : ids) id = token(rng);
  const int threads = num_threads();
  set_num_threads(3);  // uneven position ranges
  // float32 activations in the bf16 model's prefill (ops/gemm_bf16.h): the attention paths are compared
  // here at 1e-4, and bf16 activations, rounded at different points on the two paths, differ by far more
  use_gemm_bf16_for_prefill(false);
  const auto naive = all_logits(model, ids, total, CacheType::kF32, AttentionPath::kNaive);
  const auto prefilled = all_logits(model, ids, total);
  const auto decoded = all_logits(model, ids, prefill);
  set_num_threads(threads);
  use_gemm_bf16_for_prefill(true);
  const test::Diff a = test::compare(prefilled, naive);
  EXPECT_LT(a.max_abs_diff, 1e-4f * a.max_abs_ref) << a.max_abs_diff;
  const std::vector<float> naive_tail(naive.begin() + (prefill - 1) * vocab, naive.end());
  const std::vector<float> decoded_tail(decoded.begin() + (prefill - 1) * vocab, decoded.end());
  const test::Diff b = test::compare(decoded_tail, naive_tail);
  EXPECT_LT(b.max_abs_diff, 1e-4f * b.max_abs_ref) << b.max_abs_diff;
  // The same positions over a q8 cache with AMX's bfloat16 tile products (where
  // the CPU has them): against the naive path's float32 products over the same
  // stored values, only the bfloat16 rounding of the products' inputs differs.
  if (!amx::available()) return;
  set_num_threads(3);
  use_gemm_bf16_for_prefill(false);
  const auto naive_q8 = all_logits(model, ids, total, CacheType::kQ8, AttentionPath::kNaive);
  const auto decoded_q8 = all_logits(model, ids, prefill, CacheType::kQ8);
  use_gemm_bf16_for_prefill(true);
  set_num_threads(threads);
  const Agreement q8 = agreement(naive_q8, decoded_q8, vocab);
  std::printf("[ amx ] q8 cache, AMX against float32 products over %lld positions: mean KL %.7f nats, top-1 %.1f%%\n",
              (long long)total, q8.mean_kl, 100.0 * q8.top1);
  EXPECT_LT(q8.mean_kl, 2e-5);
  EXPECT_GT(q8.top1, 0.98);
}

// A quantized latent cache (q8: 9 bits per value; q4: 4-bit c_kv and bfloat16
// k_R) against the float32 cache on real text, prefilled and one token at a
// time; the naive path reads the same stored values, so it agrees with the
// absorbed one's float32 products under each type. Where the CPU has AMX, the
// absorbed path's bfloat16 tile products (ops/amx.h) must stay within the
// same bounds.
TEST(QuantizedCache, StaysCloseToFloat32CacheOnRealText) {
  const auto tokenizer = Tokenizer::load(shipped_model());
  const auto ids = tokenizer->encode(kText);
  Model model(shipped_model());
  const int64_t vocab = model.config().vocab_size, n = static_cast<int64_t>(ids.size());
  const auto reference = all_logits(model, ids, n);
  for (auto [type, max_kl, min_top1] : {std::tuple{CacheType::kQ8, 1e-4, 0.99}, std::tuple{CacheType::kQ4, 2e-3, 0.97}}) {
    for (bool tiles : {false, true}) {
      if (tiles && !amx::available()) continue;
      amx::set_enabled(tiles);
      const auto prefilled = all_logits(model, ids, n, type);
      const auto stepped = all_logits(model, ids, 1, type);
      const Agreement a = agreement(reference, prefilled, vocab), b = agreement(reference, stepped, vocab);
      std::printf("[ cache ] %s%s vs f32 cache over %lld positions: mean KL %.6f nats, top-1 %.1f%% (prefill); "
                  "%.6f, %.1f%% (one token at a time)\n",
                  cache_type_name(type).c_str(), tiles ? " (AMX bf16 products)" : "", (long long)n, a.mean_kl,
                  100.0 * a.top1, b.mean_kl, 100.0 * b.top1);
      EXPECT_LT(a.mean_kl, max_kl);
      EXPECT_GT(a.top1, min_top1);
      EXPECT_LT(b.mean_kl, max_kl);
      EXPECT_GT(b.top1, min_top1);
      EXPECT_GT(a.mean_kl, 0.0);  // the cache really was quantized
      if (!tiles) {  // the attention paths at 1e-4: float32 activations in prefill, as in LongContext
        use_gemm_bf16_for_prefill(false);
        const test::Diff d = test::compare(all_logits(model, ids, n, type, AttentionPath::kNaive),
                                           all_logits(model, ids, n, type));
        use_gemm_bf16_for_prefill(true);
        EXPECT_LT(d.max_abs_diff, 1e-4f * d.max_abs_ref) << cache_type_name(type);
      }
    }
    amx::set_enabled(true);
  }
}

// --quantize TYPE: weights re-encoded at load time give exactly the model that
// `dsv2 quantize --type TYPE` writes (same encoding, same kernels).
TEST(LoadTimeQuantization, EqualsTheQuantizedDirectory) {
  const auto ids = Tokenizer::load(shipped_model())->encode(kText);
  for (DType type : {DType::I8, DType::U8, DType::F8_E4M3}) {
    test::TempDir tmp;
    convert_model_dir(shipped_model(), tmp.path("q"), type);
    Model stored(tmp.path("q")), at_load(shipped_model(), type);
    for (size_t l = 0; l < stored.weights().layers.size(); ++l)
      EXPECT_EQ(stored.weights().layers[l].self_attn.q_a_proj.dtype, at_load.weights().layers[l].self_attn.q_a_proj.dtype);
    EXPECT_EQ(all_logits(stored, ids, static_cast<int64_t>(ids.size()) - 4),
              all_logits(at_load, ids, static_cast<int64_t>(ids.size()) - 4))
        << dtype_name(type);
  }
}

}  // namespace
}  // namespace dsv2
