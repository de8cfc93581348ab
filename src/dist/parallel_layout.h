// How the ranks of a job combine expert and data parallelism (as Megatron-LM
// and DeepSpeed-MoE arrange them; ../shared/SPEC.md "Parallel training"):
// N ranks form N/E expert-parallel groups of E consecutive ranks. Within a
// group the routed experts are split (ExpertPlacement) and tokens travel to
// them; the N/E ranks holding the same expert shard (same place in their
// groups) are that shard's data-parallel replicas. Everything else (attention,
// dense layers, shared experts, embeddings) is replicated on all N ranks.
#pragma once

#include <cstdint>
#include <string>

#include "dist/communicator.h"
#include "dist/expert_placement.h"

namespace dsv2::dist {

struct ParallelLayout {
  Communicator world;     // all N ranks: batch statistics, replicated parameters
  Communicator experts;   // this rank's expert-parallel group (E ranks): the token exchange
  Communicator replicas;  // the ranks holding the same expert shard (N/E): its gradients
  ExpertPlacement placement;

  int expert_parallel() const { return experts.size(); }
  int data_parallel() const { return replicas.size(); }

  // Returns the reason `expert_parallel` does not fit, or "" when it does.
  static std::string check(int ranks, int expert_parallel, int64_t routed_experts);
  // Splits `world` (throws Error when check() fails).
  static ParallelLayout make(const Communicator& world, int expert_parallel, int64_t routed_experts);
};

}  // namespace dsv2::dist
