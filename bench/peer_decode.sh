#!/usr/bin/env bash
# Decode only, dsv2 against ik_llama.cpp on the same weights, many short
# alternating rounds. Decoding reads memory, and this VM's bandwidth moves
# within minutes, so the side-by-side run's 3 rounds (bench/peer_side_by_side.sh)
# leave decode ratios uncertain by ±20%; this takes ROUNDS (default 8) rounds of
# one dsv2 run and one ik run per weight type (ik with -rtr 0 and 1 on alternate
# rounds), and reports the medians and the per-round ratios' median.
#
# Usage: bash bench/peer_decode.sh IK_BUILD_DIR BF16_DIR BF16.gguf Q8_0.gguf Q4_0.gguf
# (the arguments of bench/peer_side_by_side.sh, bench/peer_args.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/peer_args.sh "$@"
rounds=${ROUNDS:-8} gen=${GEN:-64}
out=$(mktemp)
for round in $(seq "$rounds"); do
  for t in bf16 q8 q4; do
    build/dsv2 bench -m "${dsv2_dir[$t]}" --prompt 16 --gen "$gen" --threads 2 --json |
      python3 -c 'import json,sys; print(sys.argv[1], sys.argv[2], "dsv2", json.load(sys.stdin)["decode_tokens_per_s"])' "$t" "$round" >>"$out"
    "$ik/bin/llama-bench" -m "${gguf[$t]}" -t 2 -mla 3 -fa 1 -fmoe 1 -rtr $((round % 2)) -p 0 -n "$gen" -r 1 -o json 2>/dev/null |
      python3 -c 'import json,sys; print(sys.argv[1], sys.argv[2], "ik", json.load(sys.stdin)[0]["avg_ts"])' "$t" "$round" >>"$out"
  done
done
python3 - "$out" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"decode tokens/s, 2 threads, {len(rows) // 6} rounds (ik: -rtr 0 and 1 on alternate rounds)")
for t in ("bf16", "q8", "q4"):
    d = {r[1]: float(r[3]) for r in rows if r[0] == t and r[2] == "dsv2"}
    k = {r[1]: float(r[3]) for r in rows if r[0] == t and r[2] == "ik"}
    ratios = [d[r] / k[r] for r in d]
    print(f"{t:5} dsv2 {st.median(d.values()):7.2f}  ik {st.median(k.values()):7.2f}  median of per-round ratios {st.median(ratios):.2f}"
          f"  (range {min(ratios):.2f}-{max(ratios):.2f})")
PY
rm -f "$out"
