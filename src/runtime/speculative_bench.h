// What `dsv2 bench --speculative mtp` measures: greedy tokens/s with and
// without MTP drafts, and the costs speculative decoding trades against each
// other, each the median of alternated runs at the same position:
//   step_1   a plain decoding step (one token through the model),
//   verify   a verification step (the pending token and `draft` drafts: the
//            extra tokens bring their own routed experts),
//   mtp      one draft (one row through the MTP module).
// With acceptance rate a per draft (independent), a step yields
// (1 - a^(N+1)) / (1 - a) tokens for verify + N × mtp, so the speedup over
// plain decoding is that ratio divided by (verify + N × mtp) / step_1; for
// N = 1: (1 + a) / (verify/step_1 + mtp/step_1).
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"
#include "model/mtp.h"
#include "runtime/benchmark.h"
#include "runtime/speculative.h"

namespace dsv2 {

struct SpeculativeBench {
  double greedy_tokens_per_s = 0.0, speculative_tokens_per_s = 0.0;
  SpeculativeStats stats;
  double step_1_s = 0.0, verify_s = 0.0, mtp_s = 0.0;  // medians, wall time
  // Medians of the process's CPU time: on a machine shared with other work and one thread, the
  // time the step actually ran, which waiting for a core does not inflate.
  double step_1_cpu_s = 0.0, verify_cpu_s = 0.0, mtp_cpu_s = 0.0;
  int64_t step_runs = 0;
};

// Greedy generation of o.generate tokens after a random prompt of o.prompt,
// plain and with drafts of `draft` (wall time, the prefill included in both),
// then `runs` alternated timings of the three steps after the prompt.
SpeculativeBench bench_speculative(Model& model, const BenchOptions& o, int64_t draft, int64_t runs);

// The speedup over plain decoding the step times imply at acceptance rate a.
double implied_speedup(const SpeculativeBench& b, int64_t draft, double acceptance);

}  // namespace dsv2
