// Training's view of the model: every parameter of for_each_tensor in one
// float32 buffer, with a gradient buffer of the same layout, and Weights views
// into both (so training code addresses tensors by their model names).
#pragma once

#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

struct ParameterInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  bool decay = true;      // AdamW weight decay: matrices only, not norms or biases
  bool trained = true;    // e_score_correction_bias is updated by load balancing, not by gradients
};

class TrainWeights {
 public:
  explicit TrainWeights(const Config& config);
  TrainWeights(const TrainWeights&) = delete;
  TrainWeights& operator=(const TrainWeights&) = delete;

  const Config& config() const { return config_; }
  std::vector<float> values, grads;
  const std::vector<ParameterInfo>& infos() const { return infos_; }
  const Weights& w() const { return w_; }   // views into values
  const Weights& g() const { return g_; }   // views into grads
  float* value(const std::string& name);    // nullptr if absent

  // Normal(0, std) for matrices, 1 for norm scales, 0 for biases (DeepSeek-V2: std 0.006).
  void init(float std, uint64_t seed);
  void zero_grads();

 private:
  Config config_;
  std::vector<ParameterInfo> infos_;
  Weights w_, g_;
};

// Mutable float32 data of a view into one of TrainWeights' buffers.
inline float* mut(const WeightMatrix& m) { return const_cast<float*>(reinterpret_cast<const float*>(m.data)); }
inline float* mut(const WeightVector& v) { return const_cast<float*>(v.values); }
inline const float* f32(const WeightMatrix& m) { return reinterpret_cast<const float*>(m.data); }

}  // namespace dsv2
