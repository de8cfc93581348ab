#!/usr/bin/env bash
# Decode tokens/s after L cached tokens with each latent-cache storage (docs/LONG_CONTEXT.md);
# three alternating passes, medians.
# Usage: bash bench/decode_by_length.sh MODEL_DIR [LENGTHS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1
lengths=${2:-"256 512 1024 2048 16384"}
for pass in 1 2 3; do
  for L in $lengths; do
    for t in f32 q8 q4; do
      build/dsv2 bench -m "$model" --ctx $L --cache-type $t --gen 64 --json |
        python3 -c 'import json, sys; print(sys.argv[1], sys.argv[2], json.load(sys.stdin)["decode_tokens_per_s"])' $L $t
    done
  done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    L, t, tps = line.split()
    runs.setdefault((int(L), t), []).append(float(tps))
for (L, t), v in sorted(runs.items()):
    print("ctx %-6d %-3s median %.0f tok/s  (%s)" % (L, t, statistics.median(v), " ".join("%.0f" % x for x in v)))'
