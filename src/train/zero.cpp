#include "train/zero.h"

namespace dsv2 {

namespace {

// [begin, end) cut into `parts` contiguous slices at multiples of 16 floats
// (whole SIMD vectors for AdamW), the last slice ending at `end`.
std::vector<int64_t> split(int64_t begin, int64_t end, int parts) {
  std::vector<int64_t> bounds(parts + 1);
  for (int p = 0; p < parts; ++p) bounds[p] = begin + (end - begin) * p / parts / 16 * 16;
  bounds[parts] = end;
  return bounds;
}

}  // namespace

ZeroPartition::ZeroPartition(const TrainWeights& weights, const dist::ParallelLayout& layout)
    : layout_(layout),
      replicated_bounds_(split(0, weights.replicated_size(), layout.world.size())),
      expert_bounds_(split(weights.replicated_size(), static_cast<int64_t>(weights.values.size()), layout.replicas.size())) {
  const int r = layout.world.rank(), e = layout.replicas.rank();
  owned_ = {{replicated_bounds_[r], replicated_bounds_[r + 1]}, {expert_bounds_[e], expert_bounds_[e + 1]}};
}

void ZeroPartition::reduce_gradients(TrainWeights& weights) const {
  layout_.world.reduce_scatter_sum(weights.grads.data(), replicated_bounds_);
  layout_.replicas.reduce_scatter_sum(weights.grads.data(), expert_bounds_);
}

void ZeroPartition::gather_parameters(TrainWeights& weights) const {
  layout_.world.all_gather_segments(weights.values.data(), replicated_bounds_);
  layout_.replicas.all_gather_segments(weights.values.data(), expert_bounds_);
}

}  // namespace dsv2
