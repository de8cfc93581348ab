// Which rank of an expert-parallel group holds which routed experts: each rank
// a contiguous block of n_routed_experts / ranks experts (DeepSeek-V2 spreads a
// layer's routed experts evenly over its D devices). With one rank, it holds all.
#pragma once

#include <cstdint>

namespace dsv2::dist {

struct ExpertPlacement {
  int64_t experts = 0;  // routed experts per MoE layer
  int ranks = 1;        // size of the expert-parallel group
  int rank = 0;         // this process's place in it

  int64_t per_rank() const { return ranks > 0 ? experts / ranks : experts; }
  int64_t first() const { return rank * per_rank(); }
  int64_t end() const { return first() + per_rank(); }
  bool owns(int64_t expert) const { return expert >= first() && expert < end(); }
  int owner(int64_t expert) const { return static_cast<int>(expert / per_rank()); }
};

}  // namespace dsv2::dist
