// `dsv2 init --like NAME`: a model directory with the exact published shapes of
// a DeepSeek release and random weights, so that speed and memory can be
// measured on the real sizes without downloading anything.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace dsv2 {

// The config.json values of deepseek-ai/DeepSeek-V2-Lite, DeepSeek-V2 and
// DeepSeek-V3 ("deepseek-v2-lite", "deepseek-v2", "deepseek-v3").
Config published_config(const std::string& name);
std::vector<std::string> published_config_names();

// Writes config.json + model.safetensors: weight matrices drawn uniformly with
// standard deviation 0.02 (the configs' initializer_range) in `dtype` (F32,
// BF16, F8_E4M3, I8 = q8 or U8 = q4; quantized ones drawn directly as codes with a
// per-block scale), norm scales 1, the noaux_tc bias 0. Deterministic for a
// seed. No tokenizer is written: use random token ids (dsv2 bench does).
void write_random_model(const Config& config, DType dtype, const std::string& out_dir, uint64_t seed,
                        const std::function<void(uint64_t done_bytes, uint64_t total_bytes)>& progress = {});

}  // namespace dsv2
