#include "model/convert.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/kernels.h"

namespace dsv2 {

std::string config_json_for_storage(const std::string& config_text, DType target) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(config_text);
  j.erase("quantization_config");  // float8 block scales are folded in
  j.erase("dsv2_quantization");
  j["torch_dtype"] = target == DType::F32 ? "float32" : "bfloat16";
  if (is_block_quantized(target))  // informational: the loader goes by each tensor's dtype
    j["dsv2_quantization"] = {{"type", target == DType::I8 ? "q8" : "q4"}, {"block_size", kQuantBlock}, {"scale_dtype", "float32"}};
  return j.dump(2) + "\n";
}

DType stored_matrix_type(const std::string& name, const std::vector<int64_t>& shape, DType target) {
  if (!is_block_quantized(target)) return target;
  // The router stays float32: it is tiny, and 8-bit activations in its matmul
  // would flip near-tied expert choices.
  if (name.size() >= 16 && name.compare(name.size() - 16, 16, ".mlp.gate.weight") == 0) return DType::F32;
  if (shape[1] % kQuantBlock != 0) return DType::BF16;
  if (target == DType::U8 && (name == "model.embed_tokens.weight" || name == "lm_head.weight")) return DType::I8;
  return target;
}

void add_matrix_specs(const std::string& name, const std::vector<int64_t>& shape, DType type, std::vector<TensorSpec>& specs) {
  specs.push_back({name, type, {shape[0], stored_columns(type, shape[1])}});
  if (is_block_quantized(type)) specs.push_back({name + "_scale", DType::F32, {shape[0], shape[1] / kQuantBlock}});
}

void convert_model_dir(const std::string& in_dir, const std::string& out_dir, DType target,
                       const std::function<void(int64_t, int64_t)>& progress) {
  if (target != DType::F32 && target != DType::BF16 && !is_block_quantized(target))
    throw Error("convert: target type " + dtype_name(target) + " is not supported (use F32, BF16, I8 for q8 or U8 for q4)");
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
  // Visiting bound weights again keeps their views (the layer vectors already have their size).
  for_each_tensor(config, weights, [&](const TensorSlot& slot) {
    const DType type = slot.matrix ? stored_matrix_type(slot.name, slot.shape, target) : DType::F32;
    if (slot.matrix)
      add_matrix_specs(slot.name, slot.shape, type, specs);
    else
      specs.push_back({slot.name, type, slot.shape});
    sources.push_back({slot.matrix, slot.vector, type});
  });

  fs::create_directories(out_dir);
  SafetensorsWriter writer((fs::path(out_dir) / "model.safetensors").string(), specs);
  std::vector<float> row, scales;
  std::vector<uint16_t> halves;
  std::vector<uint8_t> packed;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (const WeightVector* v = sources[i].vector) {
      writer.append(v->data(), static_cast<uint64_t>(v->size) * sizeof(float));
    } else {
      const WeightMatrix& m = *sources[i].matrix;
      const DType type = sources[i].type;
      const int64_t blocks = m.cols / kQuantBlock;
      row.resize(m.cols);
      halves.resize(m.cols);
      packed.resize(m.cols);
      scales.resize(is_block_quantized(type) ? static_cast<size_t>(m.rows * blocks) : 0);
      for (int64_t r = 0; r < m.rows; ++r) {
        m.dequantize_row(r, row.data());
        if (type == DType::F32) {
          writer.append(row.data(), row.size() * sizeof(float));
        } else if (type == DType::BF16) {
          for (int64_t c = 0; c < m.cols; ++c) halves[c] = float_to_bf16(row[c]);
          writer.append(halves.data(), halves.size() * sizeof(uint16_t));
        } else if (type == DType::I8) {
          quantize_row_q8(row.data(), m.cols, reinterpret_cast<int8_t*>(packed.data()), scales.data() + r * blocks);
          writer.append(packed.data(), static_cast<uint64_t>(m.cols));
        } else {
          quantize_row_q4(row.data(), m.cols, packed.data(), scales.data() + r * blocks);
          writer.append(packed.data(), static_cast<uint64_t>(stored_columns(type, m.cols)));
        }
      }
      if (!scales.empty()) writer.append(scales.data(), scales.size() * sizeof(float));
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
