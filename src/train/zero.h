// ZeRO-1 data parallelism (Rajbhandari et al. 2020) over TrainWeights'
// two regions: the replicated parameters are partitioned over all ranks of the
// job, each expert shard's parameters over the ranks holding that shard (its
// data-parallel replicas). A step then
//   1. reduce-scatters the gradients: each rank gets the sum over the ranks of
//      the gradients in its partition,
//   2. clips by the global norm and runs AdamW on its partition only (the
//      moments exist for it alone: ~1/N of the optimizer state),
//   3. all-gathers the updated parameters, so every rank holds them again.
// The traffic equals a plain all-reduce's. With one process the partition is
// everything and both exchanges do nothing.
#pragma once

#include <vector>

#include "dist/parallel_layout.h"
#include "train/optimizer.h"
#include "train/train_weights.h"

namespace dsv2 {

class ZeroPartition {
 public:
  ZeroPartition(const TrainWeights& weights, const dist::ParallelLayout& layout);

  // This rank's ranges of the flat buffers: a slice of the replicated region,
  // then a slice of its expert region.
  const std::vector<ParameterRange>& owned() const { return owned_; }

  void reduce_gradients(TrainWeights& weights) const;
  void gather_parameters(TrainWeights& weights) const;

 private:
  const dist::ParallelLayout& layout_;
  std::vector<int64_t> replicated_bounds_, expert_bounds_;  // offsets into the buffers, one more than the ranks
  std::vector<ParameterRange> owned_;
};

}  // namespace dsv2
