#!/bin/bash
# Prefill speed of MLA's two forms on one model, alternating, medians:
#   bash bench/mla_forms_ab.sh DSV2_BINARY MODEL_DIR PROMPT_TOKENS [ROUNDS]
# runs `dsv2 bench --prompt P --gen 4 --threads 2 --attn absorbed|naive --json` ROUNDS times each.
set -euo pipefail
B=$1; M=$2; P=$3; R=${4:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$R"); do
  for a in absorbed naive; do
    "$B" bench -m "$M" --prompt "$P" --gen 4 --threads 2 --attn $a --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(sys.argv[1], j["prefill_tokens_per_s"])' $a >> "$out"
  done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for form in ("absorbed", "naive"):
    runs = [float(r[1]) for r in rows if r[0] == form]
    print(f"{form:9s} prefill median {statistics.median(runs):.1f} tokens/s, runs {' '.join(f'{x:.1f}' for x in runs)}")
PY
