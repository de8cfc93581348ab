#!/usr/bin/env bash
# Distributed training (expert parallelism × ZeRO-1) on this machine:
#  1. training tokens/s of 2 ranks × 1 thread (EP2 with M = 1 and 2, DP2) against
#     1 process × 2 threads on the same global batch and routing, alternating,
#     medians over the timed steps and rounds; peak RSS per rank;
#  2. bytes each step moves (metrics.jsonl alltoall_bytes, allreduce_bytes: the
#     sum over ranks of the bytes each sent) for E = 4 and M = 1..4 and for
#     EP2 × DP2, against the formulas in docs/DISTRIBUTED.md.
# Usage: bash bench/train_distributed.sh [build-dir] [rounds]   (idle machine; bash tools/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
ROUNDS="${2:-3}"
C=../shared/data/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
MPI="mpirun --oversubscribe --allow-run-as-root"
"$BUILD/dsv2" tokenizer train --vocab-size 12000 --pre deepseek-v2 --out "$W/tok" $C/en/alice_in_wonderland.txt $C/zh/tang.txt 2>/dev/null
"$BUILD/dsv2" pretokenize --tokenizer "$W/tok" --out "$W/data.bin" $C/en/alice_in_wonderland.txt $C/zh/tang.txt >/dev/null
# The shipped model's shape (`small`: 16 routed experts, 4 active, hidden 256), balance losses on.
COMMON="train --preset small --tokenizer $W/tok --data $W/data.bin --seq-len 256 --batch-tokens 8192 --warmup 0
  --eval-every 0 --checkpoint-every 0 --alpha1 0.003 --alpha2 0.05 --alpha3 0.02"

echo "== throughput: $ROUNDS alternating rounds of 12 steps" >&2
for round in $(seq 1 "$ROUNDS"); do
  for m in 1 2; do
    "$BUILD/dsv2" $COMMON --steps 12 --out "$W/t/one_m${m}_$round" --devices 2 --device-limit $m --threads 2 2>/dev/null >/dev/null
    $MPI -np 2 "$BUILD/dsv2" $COMMON --steps 12 --out "$W/t/ep2_m${m}_$round" --expert-parallel 2 --device-limit $m --threads 1 2>/dev/null >/dev/null
  done
  "$BUILD/dsv2" $COMMON --steps 12 --out "$W/t/one_dense_$round" --threads 2 2>/dev/null >/dev/null
  $MPI -np 2 "$BUILD/dsv2" $COMMON --steps 12 --out "$W/t/dp2_$round" --threads 1 2>/dev/null >/dev/null
done

echo "== bytes per step: 4 ranks (E = 4, M = 1..4; E = 2 × DP 2), 3 steps each, no token dropping" >&2
for m in 1 2 3 4; do
  $MPI -np 4 "$BUILD/dsv2" $COMMON --steps 3 --out "$W/b/ep4_m$m" --expert-parallel 4 --device-limit $m --threads 1 2>/dev/null >/dev/null
done
$MPI -np 4 "$BUILD/dsv2" $COMMON --steps 3 --out "$W/b/ep2dp2_m2" --expert-parallel 2 --device-limit 2 --threads 1 2>/dev/null >/dev/null

python3 - "$W" "$ROUNDS" <<'PY'
import glob, json, os, struct, sys
W, rounds = sys.argv[1], int(sys.argv[2])
median = lambda v: sorted(v)[len(v) // 2]
def rows(d): return [json.loads(l) for l in open(d + "/metrics.jsonl") if l.strip()]
def tps(d): return median([r["tokens_per_s"] for r in rows(d)[2:]])   # steps 2.. (warm)

print("## Training tokens/s, 2 ranks x 1 thread vs 1 process x 2 threads (global batch 8192 tokens)")
print("| routing | 1 process x 2 threads | 2 ranks x 1 thread | ratio | peak RSS 1 process | peak RSS per rank |")
print("|---|---|---|---|---|---|")
for name, one, many in [("EP2, M = 1 (2 simulated devices in 1 process)", "one_m1", "ep2_m1"),
                        ("EP2, M = 2", "one_m2", "ep2_m2"), ("DP2 (E = 1)", "one_dense", "dp2")]:
    a = median([tps(f"{W}/t/{one}_{r}") for r in range(1, rounds + 1)])
    b = median([tps(f"{W}/t/{many}_{r}") for r in range(1, rounds + 1)])
    rss1 = max(rows(f"{W}/t/{one}_1")[-1]["rank_peak_rss_bytes"]) / 2**20
    rssn = rows(f"{W}/t/{many}_1")[-1]["rank_peak_rss_bytes"]
    print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f}x | {rss1:.0f} MiB | {' / '.join(f'{x / 2**20:.0f}' for x in rssn)} MiB |")

# Parameter counts from the written model: replicated (R) and routed experts (X, all of them).
def tensor_sizes(path):
    b = open(path, "rb").read(8)
    n = struct.unpack("<Q", b)[0]
    h = json.loads(open(path, "rb").read(8 + n)[8:])
    return {k: (v["data_offsets"][1] - v["data_offsets"][0]) // 4 for k, v in h.items() if k != "__metadata__"}
sizes = tensor_sizes(f"{W}/b/ep4_m1/model.safetensors")
X = sum(v for k, v in sizes.items() if ".mlp.experts." in k)
R = sum(sizes.values()) - X
cfg = json.load(open(f"{W}/b/ep4_m1/config.json"))
d, K = cfg["hidden_size"], cfg["num_experts_per_tok"]
moe_layers = cfg["num_hidden_layers"] - cfg["first_k_dense_replace"]
tokens = 8192
print()
print(f"## Bytes per step (sum over ranks), small preset: R = {R} replicated, X = {X} routed-expert parameters")
print("all-to-all formula: MoE layers x tokens x M x (E-1)/E x 4 bytes x (4d + 3K) (forward out d+2K, back d; backward out d, back d+K)")
print("reduce-scatter + all-gather formula: 2 x 4 bytes x [(N-1) R + (P-1) X]  (N ranks, P = N/E replicas of each expert shard)")
print("| run | all-to-all measured | formula | ratio | reduce-scatter/all-gather measured | formula | ratio |")
print("|---|---|---|---|---|---|---|")
for run in sorted(glob.glob(f"{W}/b/*")):
    name = os.path.basename(run)
    E, M = (4, int(name[-1])) if name.startswith("ep4") else (2, 2)
    N, P = 4, 4 // E
    r = rows(run)
    a2a = median([x["alltoall_bytes"] for x in r])
    red = median([x["allreduce_bytes"] for x in r])
    f_a2a = moe_layers * tokens * M * (E - 1) / E * 4 * (4 * d + 3 * K)
    f_red = 2 * 4 * ((N - 1) * R + (P - 1) * X)
    print(f"| {name} (E = {E}, M = {M}) | {a2a / 1e6:.2f} MB | {f_a2a / 1e6:.2f} MB | {a2a / f_a2a:.3f} | {red / 1e6:.2f} MB | {f_red / 1e6:.2f} MB | {red / f_red:.3f} |")
PY
