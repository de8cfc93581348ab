// Training's view of the model: the parameters of for_each_trained_tensor (the
// model and its MTP modules) in one
// float32 buffer, with a gradient buffer of the same layout, and Weights views
// into both (so training code addresses tensors by their model names).
//
// Under expert parallelism a process holds only its share of the routed
// experts. The buffer is laid out in two regions: [0, replicated_size()) holds
// every tensor all ranks hold (attention, dense and shared MLPs, routers, norms,
// embeddings, MTP modules), in for_each_trained_tensor order; after it come the routed experts held
// here. ZeRO's partitions are slices of these two regions.
#pragma once

#include <string>
#include <vector>

#include "dist/expert_placement.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

struct ParameterInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  int64_t slot = 0;          // its index in for_each_trained_tensor order
  int64_t routed_expert = -1;
  bool decay = true;      // AdamW weight decay: matrices only, not norms or biases
  bool trained = true;    // e_score_correction_bias is updated by load balancing, not by gradients
  bool frozen = false;    // fixed for this run (--freeze-model: everything but the MTP modules)
  bool mtp = false;       // part of an MTP module
};

// Where each tensor lies in the float32 buffer of a process that holds
// `experts`' share of the routed experts (the layout described above).
struct ParameterLayout {
  std::vector<ParameterInfo> infos;  // the tensors held, in for_each_trained_tensor order
  std::vector<int64_t> offsets;      // per for_each_trained_tensor entry: its offset, or -1 when not held
  int64_t replicated_size = 0, size = 0;
};
ParameterLayout parameter_layout(const Config& config, const dist::ExpertPlacement& experts);

class TrainWeights {
 public:
  // Every parameter (`experts` holding them all), or the replicated ones plus
  // the routed experts `experts` assigns to this rank.
  explicit TrainWeights(const Config& config, const dist::ExpertPlacement& experts = {});
  TrainWeights(const TrainWeights&) = delete;
  TrainWeights& operator=(const TrainWeights&) = delete;

  const Config& config() const { return config_; }
  const dist::ExpertPlacement& placement() const { return placement_; }
  std::vector<float> values, grads;
  const std::vector<ParameterInfo>& infos() const { return layout_.infos; }  // the tensors held here, in for_each_trained_tensor order
  int64_t replicated_size() const { return layout_.replicated_size; }
  const Weights& w() const { return w_; }   // views into values
  const Weights& g() const { return g_; }   // views into grads
  float* value(const std::string& name);    // nullptr if absent

  // Normal(0, std) for matrices, 1 for norm scales, 0 for biases (DeepSeek-V2:
  // std 0.006). Each tensor draws from its own stream (seed, its index), so a
  // rank holding some experts gets the values one process holding all would.
  void init(float std, uint64_t seed);
  // Marks every tensor outside the MTP modules frozen: the optimizer leaves it as it is.
  void freeze_all_but_mtp();
  void zero_grads();

 private:
  Config config_;
  dist::ExpertPlacement placement_;
  ParameterLayout layout_;
  Weights w_, g_;
};

// Mutable float32 data of a view into one of TrainWeights' buffers.
inline float* mut(const WeightMatrix& m) { return const_cast<float*>(reinterpret_cast<const float*>(m.data)); }
inline float* mut(const WeightVector& v) { return const_cast<float*>(v.values); }
inline const float* f32(const WeightMatrix& m) { return reinterpret_cast<const float*>(m.data); }

}  // namespace dsv2
