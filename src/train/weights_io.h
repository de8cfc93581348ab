// Training weights in and out of Hugging Face model directories.
#pragma once

#include <string>
#include <vector>

#include "train/train_weights.h"

namespace dsv2 {

// Reads the parameters this process holds from the checkpoint in `dir` (any
// stored dtype); the checkpoint must have every tensor of the model. MTP
// modules it lacks keep their values (so a model trained without MTP can
// continue with it: --init-from with --mtp-depth).
void load_train_weights(TrainWeights& weights, const std::string& dir);

// One tensor to write: its description and float32 values.
struct ParameterValues {
  const ParameterInfo* info;
  const float* values;
};

// Writes config.json + model.safetensors (float32, or bfloat16 when `bf16`)
// into `dir`, atomically per file, in the layout transformers loads. `tensors`
// must be the whole model, in for_each_trained_tensor order; MTP layers get
// copies of the embedding and the head, as DeepSeek-V3's checkpoints have.
void save_model_dir(const Config& config, const std::vector<ParameterValues>& tensors, const std::string& dir, bool bf16);
// The same for a process that holds every parameter.
void save_model_dir(const TrainWeights& weights, const std::string& dir, bool bf16);

}  // namespace dsv2
