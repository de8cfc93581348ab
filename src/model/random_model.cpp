#include "model/random_model.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/convert.h"
#include "model/weights.h"
#include "ops/kernels.h"

namespace dsv2 {

namespace {

// From the config.json files DeepSeek published with each release on Hugging Face.
constexpr const char* kDeepSeekV2Lite = R"({
  "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
  "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
  "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
  "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1,
  "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": false, "routed_scaling_factor": 1.0,
  "first_k_dense_replace": 1, "moe_layer_freq": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000,
  "max_position_embeddings": 163840,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                   "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
  "tie_word_embeddings": false, "bos_token_id": 100000, "eos_token_id": 100001})";

constexpr const char* kDeepSeekV2 = R"({
  "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 5120, "intermediate_size": 12288,
  "moe_intermediate_size": 1536, "num_hidden_layers": 60, "num_attention_heads": 128, "num_key_value_heads": 128,
  "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
  "n_routed_experts": 160, "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 8, "topk_group": 3,
  "topk_method": "group_limited_greedy", "scoring_func": "softmax", "norm_topk_prob": false,
  "routed_scaling_factor": 16.0, "first_k_dense_replace": 1, "moe_layer_freq": 1, "rms_norm_eps": 1e-6,
  "rope_theta": 10000, "max_position_embeddings": 163840,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                   "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
  "tie_word_embeddings": false, "bos_token_id": 100000, "eos_token_id": 100001})";

constexpr const char* kDeepSeekV3 = R"({
  "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
  "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_nextn_predict_layers": 1,
  "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
  "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc",
  "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 3,
  "moe_layer_freq": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000, "max_position_embeddings": 163840,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                   "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
  "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1})";

constexpr double kInitStd = 0.02;  // initializer_range of the published configs

// xorshift64*: fast, and plenty for random weights.
struct Random {
  uint64_t state;
  explicit Random(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [-a, a).
  float uniform(float a) { return a * (static_cast<float>(next() >> 40) * 0x1.0p-23f - 1.0f); }
};

// Writes one matrix as `type`, `rows_per_chunk` rows at a time.
void write_random_matrix(SafetensorsWriter& writer, int64_t rows, int64_t cols, DType type, Random& rng,
                         const std::function<void(uint64_t)>& wrote) {
  const float half_width = static_cast<float>(kInitStd * std::sqrt(3.0));  // uniform with std kInitStd
  std::vector<std::byte> buffer;
  std::vector<float> scales;            // float8's
  std::vector<uint16_t> block_scales;   // q8/q4's, float16 (add_matrix_specs)
  const int64_t blocks = cols / kQuantBlock;
  if (is_block_quantized(type)) {
    // Integers uniform over the format's range, scaled to std kInitStd:
    // q8 in [-127, 127] has std sqrt((255² - 1) / 12); q4 in [-8, 7] sqrt((16² - 1) / 12).
    const double q_std = type == DType::I8 ? std::sqrt((255.0 * 255.0 - 1.0) / 12.0) : std::sqrt((16.0 * 16.0 - 1.0) / 12.0);
    block_scales.assign(static_cast<size_t>(rows * blocks), float_to_f16(static_cast<float>(kInitStd / q_std)));
  } else if (type == DType::F8_E4M3) {  // values uniform over ±448, one scale per 128 × 128 tile
    const int64_t tiles = ((rows + kFp8Block - 1) / kFp8Block) * ((cols + kFp8Block - 1) / kFp8Block);
    scales.assign(static_cast<size_t>(tiles), half_width / 448.0f);
  }
  const size_t row_bytes = static_cast<size_t>(stored_columns(type, cols)) * dtype_size(type);
  const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>((size_t(4) << 20) / row_bytes));
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
    const int64_t n_rows = std::min(rows_per_chunk, rows - r0);
    const size_t n = static_cast<size_t>(n_rows) * row_bytes;
    buffer.resize(n);
    if (type == DType::I8) {
      auto* q = reinterpret_cast<int8_t*>(buffer.data());
      for (size_t i = 0; i < n; ++i) {
        const auto v = static_cast<int8_t>(rng.next() >> 56);
        q[i] = v == -128 ? int8_t(-127) : v;
      }
    } else if (type == DType::F8_E4M3) {
      for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<std::byte>(float_to_fp8_e4m3(rng.uniform(448.0f)));
    } else if (type == DType::U8) {
      for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<std::byte>(rng.next() >> 56);  // two uniform nibbles
    } else if (type == DType::BF16) {
      auto* h = reinterpret_cast<uint16_t*>(buffer.data());
      for (size_t i = 0; i < n / 2; ++i) h[i] = float_to_bf16(rng.uniform(half_width));
    } else {
      auto* f = reinterpret_cast<float*>(buffer.data());
      for (size_t i = 0; i < n / 4; ++i) f[i] = rng.uniform(half_width);
    }
    writer.append(buffer.data(), n);
    wrote(n);
  }
  if (!scales.empty()) {
    writer.append(scales.data(), scales.size() * sizeof(float));
    wrote(scales.size() * sizeof(float));
  }
  if (!block_scales.empty()) {
    writer.append(block_scales.data(), block_scales.size() * sizeof(uint16_t));
    wrote(block_scales.size() * sizeof(uint16_t));
  }
}

}  // namespace

std::vector<std::string> published_config_names() { return {"deepseek-v2-lite", "deepseek-v2", "deepseek-v3"}; }

Config published_config(const std::string& name) {
  if (name == "deepseek-v2-lite") return parse_config(kDeepSeekV2Lite, name);
  if (name == "deepseek-v2") return parse_config(kDeepSeekV2, name);
  if (name == "deepseek-v3") return parse_config(kDeepSeekV3, name);
  throw Error("unknown model '" + name + "' (known: deepseek-v2-lite, deepseek-v2, deepseek-v3)");
}

void write_random_model(const Config& config, DType dtype, const std::string& out_dir, uint64_t seed,
                        const std::function<void(uint64_t, uint64_t)>& progress) {
  require_supported_target(dtype);
  struct Item {
    int64_t rows, cols;  // cols 0: a 1-D tensor
    DType type;
    bool is_bias;
  };
  std::vector<TensorSpec> specs;
  std::vector<Item> items;
  Weights shapes;
  const auto collect = [&](const TensorSlot& slot) {
    if (slot.matrix) {
      const DType type = stored_matrix_type(slot.name, slot.shape, dtype);
      add_matrix_specs(slot.name, slot.shape, type, specs);
      items.push_back({slot.shape[0], slot.shape[1], type, false});
    } else {
      specs.push_back({slot.name, DType::F32, slot.shape});
      const bool bias = slot.name.find("e_score_correction_bias") != std::string::npos;
      items.push_back({slot.shape[0], 0, DType::F32, bias});
    }
  };
  // With the MTP layers config.json declares (V3), so that --speculative mtp can be measured on these shapes.
  for_each_trained_tensor(config, shapes, collect);
  uint64_t total = 0, done = 0;
  for (const TensorSpec& s : specs) total += s.nbytes();

  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  SafetensorsWriter writer((fs::path(out_dir) / "model.safetensors").string(), specs);
  const auto wrote = [&](uint64_t n) {
    done += n;
    if (progress) progress(done, total);
  };
  for (size_t i = 0; i < items.size(); ++i) {
    Random rng(seed + 7919 * i);  // one stream per tensor: any tensor can be regenerated alone
    const Item& it = items[i];
    if (it.cols == 0) {
      const std::vector<float> values(static_cast<size_t>(it.rows), it.is_bias ? 0.0f : 1.0f);
      writer.append(values.data(), values.size() * sizeof(float));
      wrote(values.size() * sizeof(float));
    } else {
      write_random_matrix(writer, it.rows, it.cols, it.type, rng, wrote);
    }
  }
  writer.commit();
  write_file_atomically((fs::path(out_dir) / "config.json").string(), config_json_for_storage(config_json(config), dtype));
}

}  // namespace dsv2
