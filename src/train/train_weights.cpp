#include "train/train_weights.h"

#include <random>

namespace dsv2 {

TrainWeights::TrainWeights(const Config& config) : config_(config) {
  Weights shapes;
  int64_t offset = 0;
  for_each_tensor(config_, shapes, [&](const TensorSlot& slot) {
    ParameterInfo info;
    info.name = slot.name;
    info.shape = slot.shape;
    info.size = 1;
    for (int64_t d : slot.shape) info.size *= d;
    info.offset = offset;
    info.decay = slot.shape.size() == 2;
    info.trained = info.name.find("e_score_correction_bias") == std::string::npos;
    offset += info.size;
    infos_.push_back(info);
  });
  values.assign(static_cast<size_t>(offset), 0.0f);
  grads.assign(static_cast<size_t>(offset), 0.0f);
  bind_f32_buffer(config_, w_, values.data());
  bind_f32_buffer(config_, g_, grads.data());
}

float* TrainWeights::value(const std::string& name) {
  for (const auto& info : infos_)
    if (info.name == name) return values.data() + info.offset;
  return nullptr;
}

void TrainWeights::init(float std, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, std);
  for (const auto& info : infos_) {
    float* p = values.data() + info.offset;
    const bool is_norm = info.name.find("norm") != std::string::npos;
    for (int64_t i = 0; i < info.size; ++i) p[i] = info.shape.size() == 2 ? normal(rng) : (is_norm ? 1.0f : 0.0f);
  }
}

void TrainWeights::zero_grads() { std::fill(grads.begin(), grads.end(), 0.0f); }

}  // namespace dsv2
