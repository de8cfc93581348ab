#!/usr/bin/env bash
# Inference split over 2 ranks on this machine: decode tokens/s of 2 ranks × 1
# thread against 1 process × 2 threads, peak RSS per rank against one process,
# bytes exchanged per decoded token and how often a rank had no routed work;
# alternating rounds, medians. The model: DeepSeek-V2-Lite's shapes, 4 layers,
# q8 random weights (dsv2 init writes it into MODELS_DIR if missing, ~2.5 GB).
# Usage: bash bench/infer_distributed.sh [build-dir] [models-dir] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
MODELS="${2:-/work/models}"
ROUNDS="${3:-5}"
MODEL="$MODELS/v2l4-q8"
[[ -f "$MODEL/model.safetensors" ]] || "$BUILD/dsv2" init --like deepseek-v2-lite --layers 4 --dtype q8 -o "$MODEL"
MPI="mpirun --oversubscribe --allow-run-as-root"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
BENCH="bench -m $MODEL --prompt 64 --gen 48 --json"
for round in $(seq 1 "$ROUNDS"); do
  "$BUILD/dsv2" $BENCH --threads 2 >"$OUT/one_$round.json"
  $MPI -np 2 "$BUILD/dsv2" $BENCH --threads 1 >"$OUT/two_$round.json"
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(f"{out}/{name}_{r}.json")) for r in range(1, rounds + 1)]
one, two = load("one"), load("two")
median = lambda v: sorted(v)[len(v) // 2]
d1 = median([j["decode_tokens_per_s"] for j in one]); d2 = median([j["decode_tokens_per_s"] for j in two])
p1 = median([j["prefill_tokens_per_s"] for j in one]); p2 = median([j["prefill_tokens_per_s"] for j in two])
rss1 = max(j["peak_rss_bytes"] for j in one); rss2 = max(max(j["rank_peak_rss_bytes"]) for j in two)
runs = lambda results: ", ".join("%.1f" % j["decode_tokens_per_s"] for j in results)
print(f"decode tokens/s, medians of {rounds}: 1 process x 2 threads {d1:.2f} ({runs(one)}), "
      f"2 ranks x 1 thread {d2:.2f} ({runs(two)}): {d2 / d1:.2f}x (goal >= 0.9)")
print(f"prefill tokens/s: 1 x 2 {p1:.1f}, 2 x 1 {p2:.1f}: {p2 / p1:.2f}x")
print(f"peak RSS: 1 process {rss1 / 2**20:.0f} MiB, largest rank {rss2 / 2**20:.0f} MiB: {rss2 / rss1:.2f}x (goal <= 0.7)")
print(f"exchanged per decoded token: {median([j['exchange_bytes_per_token'] for j in two]) / 1e3:.1f} KB; "
      f"routed work skipped per rank: {two[-1]['rank_expert_skip_share']}")
PY
