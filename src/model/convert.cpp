#include "model/convert.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/kernels.h"

namespace dsv2 {

void require_supported_target(DType target) {
  if (target != DType::F32 && target != DType::BF16 && target != DType::F8_E4M3 && !is_block_quantized(target))
    throw Error("weight type " + dtype_name(target) + " is not supported (F32, BF16, F8_E4M3, I8 = q8, U8 = q4)");
}

std::string config_json_for_storage(const std::string& config_text, DType target) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(config_text);
  j.erase("quantization_config");  // float8 block scales are folded in
  j.erase("dsv2_quantization");
  j["torch_dtype"] = target == DType::F32 ? "float32" : "bfloat16";
  if (target == DType::F8_E4M3)  // DeepSeek-V3's own release format
    j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                {"weight_block_size", {kFp8Block, kFp8Block}}};
  if (is_block_quantized(target))  // informational: the loader goes by each tensor's dtype
    j["dsv2_quantization"] = {{"type", target == DType::I8 ? "q8" : "q4"}, {"block_size", kQuantBlock}, {"scale_dtype", "float16"}};
  return j.dump(2) + "\n";
}

DType stored_matrix_type(const std::string& name, const std::vector<int64_t>& shape, DType target) {
  auto ends_with = [&](std::string_view tail) {
    return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  const bool router = ends_with(".mlp.gate.weight");
  if (name == "score.weight") return DType::F32;  // a reward model's head: one row, and its score is the output
  // The main model's, and the copies an MTP layer carries (model.layers.<L>.embed_tokens, .shared_head.head).
  const bool embedding_or_head = ends_with("embed_tokens.weight") || name == "lm_head.weight" || ends_with(".shared_head.head.weight");
  // As DeepSeek-V3 ships: embedding, LM head and router in bfloat16, every other matrix fp8.
  if (target == DType::F8_E4M3)
    return router || embedding_or_head ? DType::BF16 : target;
  if (!is_block_quantized(target)) return target;
  // The router stays float32: it is tiny, and 8-bit activations in its matmul
  // would flip near-tied expert choices.
  if (router) return DType::F32;
  if (shape[1] % kQuantBlock != 0) return DType::BF16;
  if (target == DType::U8 && embedding_or_head) return DType::I8;
  return target;
}

void add_matrix_specs(const std::string& name, const std::vector<int64_t>& shape, DType type, std::vector<TensorSpec>& specs) {
  specs.push_back({name, type, {shape[0], stored_columns(type, shape[1])}});
  if (is_block_quantized(type)) specs.push_back({name + "_scale", DType::F16, {shape[0], shape[1] / kQuantBlock}});
  if (type == DType::F8_E4M3)
    specs.push_back({name + "_scale_inv", DType::F32, {(shape[0] + kFp8Block - 1) / kFp8Block, (shape[1] + kFp8Block - 1) / kFp8Block}});
}

namespace {

// A matrix as fp8 with a scale per 128 × 128 tile: 128 rows at a time (a
// tile's scale needs all its rows), then the [row blocks, column blocks] scales.
void encode_fp8_matrix(const WeightMatrix& m, const ByteSink& append) {
  const int64_t col_blocks = (m.cols + kFp8Block - 1) / kFp8Block;
  std::vector<float> rows(static_cast<size_t>(kFp8Block * m.cols)), scales;
  std::vector<uint8_t> q(rows.size());
  for (int64_t r0 = 0; r0 < m.rows; r0 += kFp8Block) {
    const int64_t n = std::min(kFp8Block, m.rows - r0);
    for (int64_t r = 0; r < n; ++r) m.dequantize_row(r0 + r, rows.data() + r * m.cols);
    scales.resize(scales.size() + static_cast<size_t>(col_blocks));
    quantize_rows_fp8(rows.data(), n, m.cols, kFp8Block, q.data(), scales.data() + scales.size() - col_blocks);
    append(q.data(), static_cast<size_t>(n * m.cols));
  }
  append(scales.data(), scales.size() * sizeof(float));
}

}  // namespace

void encode_matrix(const WeightMatrix& m, DType type, const ByteSink& append) {
  if (type == DType::F8_E4M3) return encode_fp8_matrix(m, append);
  const int64_t blocks = m.cols / kQuantBlock;
  const size_t row_bytes = static_cast<size_t>(stored_columns(type, m.cols)) * dtype_size(type);
  std::vector<float> row(static_cast<size_t>(m.cols));
  std::vector<std::byte> encoded(row_bytes);
  std::vector<uint16_t> scales(is_block_quantized(type) ? static_cast<size_t>(m.rows * blocks) : 0);  // float16
  for (int64_t r = 0; r < m.rows; ++r) {
    m.dequantize_row(r, row.data());
    encode_row(type, row.data(), m.cols, encoded.data(), scales.empty() ? nullptr : scales.data() + r * blocks);
    append(encoded.data(), row_bytes);
  }
  if (!scales.empty()) append(scales.data(), scales.size() * sizeof(uint16_t));
}

void quantize_weights_in_memory(const Config& config, Weights& weights, DType target,
                                std::vector<std::vector<std::byte>>& storage) {
  require_supported_target(target);
  for_each_tensor(config, weights, [&](const TensorSlot& slot) {
    if (!slot.matrix || slot.matrix->empty()) return;  // (a routed expert another rank holds)
    WeightMatrix& m = *slot.matrix;
    const DType type = stored_matrix_type(slot.name, slot.shape, target);
    if (type == m.dtype) return;
    // [values][padding to 4][scales: float16 for q8/q4, float32 for float8]: the scales come after all the values.
    const size_t value_bytes = static_cast<size_t>(m.rows * stored_columns(type, m.cols)) * dtype_size(type);
    const size_t scales_at = (value_bytes + alignof(float) - 1) / alignof(float) * alignof(float);
    std::vector<std::byte>& bytes = storage.emplace_back();
    bytes.reserve(scales_at);
    encode_matrix(m, type, [&](const void* data, size_t n) {
      if (bytes.size() == value_bytes) bytes.resize(scales_at);
      const auto* p = static_cast<const std::byte*>(data);
      bytes.insert(bytes.end(), p, p + n);
    });
    m.dtype = type;
    m.data = bytes.data();
    m.scale_inv = bytes.size() > scales_at ? bytes.data() + scales_at : nullptr;
    m.scale_dtype = is_block_quantized(type) ? DType::F16 : DType::F32;
    m.block_rows = type == DType::F8_E4M3 ? kFp8Block : 1;
    m.block_cols = type == DType::F8_E4M3 ? kFp8Block : kQuantBlock;
  });
}

void convert_model_dir(const std::string& in_dir, const std::string& out_dir, DType target,
                       const std::function<void(int64_t, int64_t)>& progress) {
  require_supported_target(target);
  namespace fs = std::filesystem;
  if (fs::exists(out_dir) && fs::equivalent(in_dir, out_dir)) throw Error(out_dir + ": output directory is the input directory");
  const Config config = load_config(in_dir);
  const Checkpoint checkpoint(in_dir);
  Weights weights = load_weights(config, checkpoint);  // views into the input files

  struct Source {
    const WeightMatrix* matrix;
    const WeightVector* vector;
    DType type;
  };
  std::vector<TensorSpec> specs;
  std::vector<Source> sources;
  auto add = [&](const TensorSlot& slot) {
    const DType type = slot.matrix ? stored_matrix_type(slot.name, slot.shape, target) : DType::F32;
    if (slot.matrix)
      add_matrix_specs(slot.name, slot.shape, type, specs);
    else
      specs.push_back({slot.name, type, slot.shape});
    sources.push_back({slot.matrix, slot.vector, type});
  };
  // Visiting bound weights again keeps their views (the layer vectors already have their size).
  for_each_tensor(config, weights, add);
  // The MTP layers the checkpoint has whole (drafting needs them), their copies
  // of the embedding and head included.
  const int64_t d = config.hidden_size;
  weights.mtp.resize(config.num_nextn_predict_layers);
  std::vector<WeightMatrix> copies(2 * config.num_nextn_predict_layers);  // per layer: embed_tokens, shared_head.head
  for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k) {
    const std::string p = "model.layers." + std::to_string(config.num_hidden_layers + k) + ".";
    std::vector<TensorSlot> slots;
    visit_mtp_layer(config, k, weights.mtp[k], [&](const TensorSlot& slot) { slots.push_back(slot); });
    // A layer some checkpoints carry only in part (no drafting possible) is dropped as before.
    if (!std::all_of(slots.begin(), slots.end(), [&](const TensorSlot& slot) { return checkpoint.find(slot.name); }))
      continue;
    const char* copy_names[] = {"embed_tokens.weight", "shared_head.head.weight"};
    for (int i = 0; i < 2; ++i)
      if (checkpoint.find(p + copy_names[i])) slots.push_back({p + copy_names[i], {config.vocab_size, d}, &copies[2 * k + i]});
    for (const TensorSlot& slot : slots) {
      bind_tensor(config, checkpoint, slot, weights.converted);
      add(slot);
    }
  }

  fs::create_directories(out_dir);
  SafetensorsWriter writer((fs::path(out_dir) / "model.safetensors").string(), specs);
  for (size_t i = 0; i < sources.size(); ++i) {
    if (const WeightVector* v = sources[i].vector) {
      writer.append(v->data(), static_cast<uint64_t>(v->size) * sizeof(float));
    } else {
      encode_matrix(*sources[i].matrix, sources[i].type,
                    [&](const void* data, size_t n) { writer.append(data, static_cast<uint64_t>(n)); });
    }
    if (progress) progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(sources.size()));
  }
  writer.commit();
  write_file_atomically((fs::path(out_dir) / "config.json").string(), config_json_for_storage(read_text_file((fs::path(in_dir) / "config.json").string()), target));
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "MODEL_CARD.md"}) {
    const fs::path from = fs::path(in_dir) / name;
    if (fs::exists(from)) write_file_atomically((fs::path(out_dir) / name).string(), read_text_file(from.string()));
  }
}

}  // namespace dsv2
