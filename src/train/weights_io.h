// Training weights in and out of Hugging Face model directories.
#pragma once

#include <string>

#include "train/train_weights.h"

namespace dsv2 {

// Reads every parameter from the checkpoint in `dir` (any stored dtype).
void load_train_weights(TrainWeights& weights, const std::string& dir);

// Writes config.json + model.safetensors (float32, or bfloat16 when `bf16`)
// into `dir`, atomically per file, in the layout transformers loads.
void save_model_dir(const TrainWeights& weights, const std::string& dir, bool bf16);

}  // namespace dsv2
