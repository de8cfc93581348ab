#include "dist/parallel_layout.h"

#include "core/error.h"

namespace dsv2::dist {

std::string ParallelLayout::check(int ranks, int expert_parallel, int64_t routed_experts) {
  if (expert_parallel < 1) return "--expert-parallel must be at least 1";
  if (ranks % expert_parallel != 0)
    return "--expert-parallel " + std::to_string(expert_parallel) + " does not divide the " + std::to_string(ranks) + " ranks";
  if (expert_parallel > 1 && (routed_experts == 0 || routed_experts % expert_parallel != 0))
    return "--expert-parallel " + std::to_string(expert_parallel) + " does not divide the model's " +
           std::to_string(routed_experts) + " routed experts";
  return "";
}

ParallelLayout ParallelLayout::make(const Communicator& world, int expert_parallel, int64_t routed_experts) {
  const std::string problem = check(world.size(), expert_parallel, routed_experts);
  if (!problem.empty()) throw Error(problem);
  ParallelLayout layout;
  layout.world = world;
  const int group = world.rank() / expert_parallel, place = world.rank() % expert_parallel;
  layout.experts = world.split(group, place);
  layout.replicas = world.split(place, group);
  layout.placement = {routed_experts, expert_parallel, place};
  return layout;
}

}  // namespace dsv2::dist
