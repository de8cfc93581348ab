#!/bin/sh
# GRPO's sampling speed against `dsv2 generate` alone, and a GRPO step's phase
# times (docs/PERFORMANCE.md, "GRPO"). Each of RUNS rounds runs, back to back,
# `dsv2 generate` on the model as stored, `dsv2 generate` on a float32 copy
# (what GRPO samples from), and `dsv2 grpo` for STEPS steps, so that on a shared
# machine the three see about the same load. Usage:
#   [RUNS=3] bench/grpo_sampling.sh MODEL PROMPTS.jsonl [GROUP] [PROMPTS_PER_STEP] [NEW_TOKENS] [STEPS]
# PROMPTS.jsonl: e.g. python3 tools/make_rl_prompts.py --out rl.jsonl --count 200
set -eu
model=$1 prompts=$2 group=${3:-8} per_step=${4:-2} new=${5:-64} steps=${6:-3}
dsv2=${DSV2:-build/dsv2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gen() {
  nice "$dsv2" generate -m "$1" -p "What is 3 + 4?" -n "$new" --ignore-eos --stats --seed 1 2>&1 >/dev/null | tail -1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'
}
for i in $(seq "${RUNS:-3}"); do
  rm -rf "$out/grpo"
  nice "$dsv2" grpo -m "$model" --prompts "$prompts" --out "$out/grpo" --reward exact-answer --group "$group" \
    --prompts-per-step "$per_step" --max-new-tokens "$new" --steps "$steps" --seed "$i" >/dev/null 2>&1
  echo "generate $(gen "$model") $(gen "$out/grpo")" >>"$out/generate.txt"
  cat "$out/grpo/metrics.jsonl" >>"$out/metrics.jsonl"
done
python3 - "$out" "$group" "$per_step" "$new" <<'PY'
import json, statistics, sys
out, G, P, new = sys.argv[1], *map(int, sys.argv[2:])
gen = [tuple(map(float, l.split()[1:])) for l in open(out + "/generate.txt")]
lines = [json.loads(l) for l in open(out + "/metrics.jsonl")]
rest = [l for l in lines if l["step"] > 0]  # each run's first step also faults the weights in
def stat(xs): return f"median {statistics.median(xs):7.1f}  best {max(xs):7.1f}"
print(f"tokens/s, {new} new tokens per sequence, {len(gen)} rounds:")
print(f"  dsv2 generate, model as stored       {stat([g[0] for g in gen])}")
print(f"  dsv2 generate, float32 weights       {stat([g[1] for g in gen])}")
print(f"  dsv2 grpo sampling, {P}x{G} sequences  {stat([l['sampled_tokens_per_s'] for l in rest])}  ({len(rest)} steps)")
keys = ["sampling", "reward", "reference", "policy", "optimizer"]
total = sum(l["seconds"]["step"] for l in rest)
print("GRPO step phases (median seconds; share of all steps' time):")
for k in keys:
    xs = [l["seconds"][k] for l in rest]
    print(f"  {k:10s} {statistics.median(xs):7.2f} s  {100 * sum(xs) / total:4.0f}%")
print(f"  step       {statistics.median([l['seconds']['step'] for l in rest]):7.2f} s"
      f"   (prefill within sampling: {statistics.median([l['seconds']['prefill'] for l in rest]):.2f} s)")
PY
