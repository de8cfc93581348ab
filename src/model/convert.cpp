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

namespace dsv2 {

namespace {

std::string torch_dtype_name(DType dtype) { return dtype == DType::BF16 ? "bfloat16" : "float32"; }

// config.json as given, minus what no longer describes the weights.
std::string converted_config(const std::string& path, DType target) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(read_text_file(path));
  j.erase("quantization_config");  // the float8 block scales are folded in
  j["torch_dtype"] = torch_dtype_name(target);
  return j.dump(2) + "\n";
}

}  // namespace

void convert_model_dir(const std::string& in_dir, const std::string& out_dir, DType target,
                       const std::function<void(int64_t, int64_t)>& progress) {
  if (target != DType::F32 && target != DType::BF16)
    throw Error("convert: target type " + dtype_name(target) + " is not supported (use F32 or BF16)");
  namespace fs = std::filesystem;
  if (fs::exists(out_dir) && fs::equivalent(in_dir, out_dir)) throw Error(out_dir + ": output directory is the input directory");
  const Config config = load_config(in_dir);
  const Checkpoint checkpoint(in_dir);
  Weights weights = load_weights(config, checkpoint);  // views into the input files

  struct Source {
    const WeightMatrix* matrix;
    const WeightVector* vector;
  };
  std::vector<TensorSpec> specs;
  std::vector<Source> sources;
  // Visiting bound weights again keeps their views (the layer vectors already have their size).
  for_each_tensor(config, weights, [&](const TensorSlot& slot) {
    specs.push_back({slot.name, slot.matrix ? target : DType::F32, slot.shape});
    sources.push_back({slot.matrix, slot.vector});
  });

  fs::create_directories(out_dir);
  SafetensorsWriter writer((fs::path(out_dir) / "model.safetensors").string(), specs);
  std::vector<float> row;
  std::vector<uint16_t> halves;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (const WeightVector* v = sources[i].vector) {
      writer.append(v->data(), static_cast<uint64_t>(v->size) * sizeof(float));
    } else {
      const WeightMatrix& m = *sources[i].matrix;
      row.resize(m.cols);
      halves.resize(m.cols);
      for (int64_t r = 0; r < m.rows; ++r) {
        m.dequantize_row(r, row.data());
        if (target == DType::F32) {
          writer.append(row.data(), row.size() * sizeof(float));
        } else {
          for (int64_t c = 0; c < m.cols; ++c) halves[c] = float_to_bf16(row[c]);
          writer.append(halves.data(), halves.size() * sizeof(uint16_t));
        }
      }
    }
    if (progress) progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(sources.size()));
  }
  writer.commit();
  write_file_atomically((fs::path(out_dir) / "config.json").string(), converted_config((fs::path(in_dir) / "config.json").string(), target));
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "MODEL_CARD.md"}) {
    const fs::path from = fs::path(in_dir) / name;
    if (fs::exists(from)) write_file_atomically((fs::path(out_dir) / name).string(), read_text_file(from.string()));
  }
}

}  // namespace dsv2
