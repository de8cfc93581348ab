#!/usr/bin/env bash
# Issue 19 part 5: on random weights of published shapes, the time of a verification step
# (1 + draft tokens) against a 1-token decoding step and one MTP draft row, from
# `dsv2 bench --speculative mtp` (each pass: medians of --step-runs alternated runs), and the
# speedup those imply at acceptance 0.6-0.9 (docs/PERFORMANCE.md). Several passes, alternating
# the models (and binaries) given; the table shows the median over passes of each figure.
# Usage: bash bench/speculative_at_scale.sh PASSES DRAFT [DSV2=]MODEL_DIR...
#   e.g. bash bench/speculative_at_scale.sh 3 1 /tmp/v2lite_q4 old=/tmp/dsv2_old:/tmp/v2lite_q4
# A model given as BIN:DIR is run with that dsv2 binary (default build/dsv2). THREADS (default 1):
# on a machine shared with other work one thread's CPU time is the figure that waiting for a core
# does not inflate; both it and wall time are shown. PROMPT (default 32): tokens before the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
passes=$1 draft=$2 threads=${THREADS:-1} prompt=${PROMPT:-32}
shift 2
for pass in $(seq "$passes"); do
  for spec in "$@"; do
    label=${spec%%=*}; [ "$label" = "$spec" ] && label=$(basename "$spec")
    target=${spec#*=}
    bin=build/dsv2 model=$target
    if [[ $target == *:* ]]; then bin=${target%%:*} model=${target#*:}; fi
    "$bin" bench -m "$model" --speculative mtp --draft "$draft" --prompt "$prompt" --gen 8 --step-runs 9 -t "$threads" \
      --json | python3 -c 'import json, sys; j = json.load(sys.stdin); print(sys.argv[1], *(j[k] for k in (
        "step_1_s", "verify_s", "mtp_draft_s", "step_1_cpu_s", "verify_cpu_s", "mtp_draft_cpu_s")))' "$label"
  done
done | python3 -c '
import statistics, sys
draft = int(sys.argv[1])
runs = {}
for line in sys.stdin:
    label, *t = line.split()
    runs.setdefault(label, []).append([float(x) for x in t])
print("%-16s %9s %9s %9s %8s %8s  %s" % ("model", "step1 ms", "verify ms", "mtp ms", "verify/1", "mtp/1",
                                         "implied speedup at a = 0.6 0.7 0.8 0.9 (passes: verify/1)"))
for label, v in runs.items():
    for clock, at in (("wall", 0), ("cpu", 3)):
        s1, ve, mt = (statistics.median(x[at + i] for x in v) for i in range(3))
        ratios = " ".join("%.3f" % (x[at + 1] / x[at]) for x in v)
        def speedup(a):
            return (1 - a ** (draft + 1)) / (1 - a) / ((ve + draft * mt) / s1)
        print("%-16s %9.1f %9.1f %9.1f %8.3f %8.3f  %s  (%s)" % (label + " " + clock, s1 * 1e3, ve * 1e3, mt * 1e3,
              ve / s1, mt / s1, " ".join("%.2fx" % speedup(a) for a in (0.6, 0.7, 0.8, 0.9)), ratios))' "$draft"
