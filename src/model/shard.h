// How the ranks of an inference job (mpirun -np N dsv2 logits|generate|bench|
// serve|chat) divide a model so that each reads about 1/N of the weights a
// token needs:
//   - routed experts: contiguous blocks of experts, as in training (dist::ExpertPlacement);
//   - attention: by heads (rows of q_proj / q_b_proj and kv_b_proj); the
//     small down-projections (q_a_proj, kv_a_proj_with_mqa) stay whole, so every
//     rank computes and caches the whole latent c_kv and k_R;
//   - o_proj and every MLP's down_proj: by output dimension (rows);
//   - dense and shared MLPs: by intermediate width (rows of gate_proj, up_proj);
//   - the LM head: by vocabulary (rows).
// The pieces travel by gather_columns; the MoE layer's partial outputs (each
// rank's experts, its slice of the shared experts) are added in rank order by
// one sum per layer. One process holds everything and exchanges nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/expert_placement.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

// A dimension cut into one contiguous range per rank: [bounds[r], bounds[r + 1]).
struct Split {
  std::vector<int64_t> bounds{0, 0};
  int64_t first(int rank) const { return bounds[rank]; }
  int64_t count(int rank) const { return bounds[rank + 1] - bounds[rank]; }
  int64_t total() const { return bounds.back(); }
  // n items over `ranks`, each cut at a multiple of `granule` (float8 weights
  // share scales over 128-row blocks, so a slice must start on one).
  static Split even(int64_t n, int ranks, int64_t granule = 1);
  // Scaled by `factor` (heads → the columns of their outputs).
  Split times(int64_t factor) const;
};

struct ShardPlan {
  const dist::Communicator* group = nullptr;  // null: this process holds the whole model
  int rank = 0, ranks = 1;
  dist::ExpertPlacement experts;
  Split heads;         // attention heads
  Split hidden;        // rows of o_proj and of every down_proj (the hidden size)
  Split dense_width;   // rows of the dense MLPs' gate_proj and up_proj
  Split shared_width;  // rows of the shared experts' gate_proj and up_proj
  Split vocab;         // rows of the LM head
  Split head_outputs;  // heads × v_head_dim: the columns of the attention output before o_proj

  bool split() const { return ranks > 1; }
  // The whole model in this process.
  static ShardPlan whole(const Config& config);
  // Rank `rank` of `ranks`. Matrices stored as float8 share scales over blocks
  // of row_granule rows (1 otherwise), so cuts fall on multiples of it. Throws
  // Error when the routed experts do not divide over the ranks.
  static ShardPlan make(const Config& config, int rank, int ranks, int64_t row_granule);
  // The same for the ranks of `group`, with the cut points `weights` allow.
  static ShardPlan make(const Config& config, const Weights& weights, const dist::Communicator& group);
};

// The rows of a tensor (a for_each_tensor slot) this rank holds: all of them,
// some (a split matrix), or none (a routed expert held elsewhere).
struct HeldRows {
  int64_t first = 0, count = 0;
};
HeldRows held_rows(const Config& config, const ShardPlan& plan, const TensorSlot& slot);

// Makes `weights` this rank's: each split matrix becomes a view of its rows
// here, and the routed experts held elsewhere become empty.
void shard_weights(const Config& config, const ShardPlan& plan, Weights& weights);

// The memory one rank of `plan` needs (dsv2 info --expert-parallel): the bytes
// of the weights it reads, by stored dtype (`dtype_of` says how each matrix is
// stored; block scales included), and the embedding table, which it maps whole
// but reads one row per token of.
struct ShardMemory {
  std::map<std::string, int64_t> weights_by_dtype;
  int64_t weights = 0, embedding = 0;
};
ShardMemory shard_memory(const Config& config, const ShardPlan& plan,
                         const std::function<DType(const TensorSlot&)>& dtype_of);

}  // namespace dsv2
