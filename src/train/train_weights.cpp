#include "train/train_weights.h"

#include <random>

namespace dsv2 {

ParameterLayout parameter_layout(const Config& config, const dist::ExpertPlacement& experts) {
  Weights shapes;
  std::vector<ParameterInfo> all;
  int64_t main_tensors = 0;
  for_each_tensor(config, shapes, [&](const TensorSlot&) { ++main_tensors; });
  for_each_trained_tensor(config, shapes, [&](const TensorSlot& slot) {
    ParameterInfo info;
    info.name = slot.name;
    info.shape = slot.shape;
    info.size = 1;
    for (int64_t d : slot.shape) info.size *= d;
    info.slot = static_cast<int64_t>(all.size());
    info.routed_expert = slot.routed_expert;
    info.decay = slot.shape.size() == 2;
    info.trained = info.name.find("e_score_correction_bias") == std::string::npos;
    info.mtp = info.slot >= main_tensors;
    // A reward model's objective never reads the LM head (kept as loaded, so the
    // directory still works as a language model; weight decay would shrink it).
    info.frozen = config.is_reward_model() && info.name == "lm_head.weight";
    all.push_back(info);
  });
  // Two passes: the replicated tensors first, then the routed experts held here.
  ParameterLayout layout;
  int64_t offset = 0;
  for (auto& info : all)
    if (info.routed_expert < 0) info.offset = offset, offset += info.size;
  layout.replicated_size = offset;
  layout.offsets.assign(all.size(), -1);
  for (auto& info : all) {
    if (info.routed_expert >= 0) {
      if (!experts.owns(info.routed_expert)) continue;
      info.offset = offset, offset += info.size;
    }
    layout.offsets[info.slot] = info.offset;
    layout.infos.push_back(info);
  }
  layout.size = offset;
  return layout;
}

TrainWeights::TrainWeights(const Config& config, const dist::ExpertPlacement& experts)
    : config_(config),
      placement_(experts.experts == 0 ? dist::ExpertPlacement{config.n_routed_experts, 1, 0} : experts),
      layout_(parameter_layout(config_, placement_)) {
  values.assign(static_cast<size_t>(layout_.size), 0.0f);
  grads.assign(static_cast<size_t>(layout_.size), 0.0f);
  bind_f32_buffer(config_, w_, values.data(), layout_.offsets);
  bind_f32_buffer(config_, g_, grads.data(), layout_.offsets);
}

float* TrainWeights::value(const std::string& name) {
  for (const auto& info : layout_.infos)
    if (info.name == name) return values.data() + info.offset;
  return nullptr;
}

void TrainWeights::init(float std, uint64_t seed) {
  for (const auto& info : layout_.infos) {
    std::seed_seq streams{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(info.slot)};
    std::mt19937_64 rng(streams);
    std::normal_distribution<float> normal(0.0f, std);
    float* p = values.data() + info.offset;
    const bool is_norm = info.name.find("norm") != std::string::npos;
    for (int64_t i = 0; i < info.size; ++i) p[i] = info.shape.size() == 2 ? normal(rng) : (is_norm ? 1.0f : 0.0f);
  }
}

void TrainWeights::freeze_all_but_mtp() {
  for (auto& info : layout_.infos) info.frozen = !info.mtp;
}

void TrainWeights::zero_grads() { std::fill(grads.begin(), grads.end(), 0.0f); }

}  // namespace dsv2
