#!/bin/sh
# GRPO's sampling speed against `dsv2 generate` alone, and a GRPO step's phase
# times (docs/PERFORMANCE.md, "GRPO"). Usage:
#   bench/grpo_sampling.sh MODEL PROMPTS.jsonl [GROUP] [PROMPTS_PER_STEP] [NEW_TOKENS] [STEPS]
# PROMPTS.jsonl: e.g. python3 tools/make_rl_prompts.py --out rl.jsonl --count 200
set -eu
model=$1 prompts=$2 group=${3:-8} per_step=${4:-2} new=${5:-64} steps=${6:-4}
dsv2=${DSV2:-build/dsv2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "dsv2 generate alone (the model as stored), $new tokens, ${RUNS:-3} runs (tokens/s):"
for i in $(seq ${RUNS:-3}); do
  nice "$dsv2" generate -m "$model" -p "What is 3 + 4?" -n "$new" --ignore-eos --stats --seed "$i" 2>&1 >/dev/null | tail -1
done
echo "dsv2 grpo: $steps steps of $per_step prompts x $group completions, up to $new new tokens each:"
nice "$dsv2" grpo -m "$model" --prompts "$prompts" --out "$out/grpo" --reward exact-answer --group "$group" \
  --prompts-per-step "$per_step" --max-new-tokens "$new" --steps "$steps" >/dev/null 2>&1
echo "dsv2 generate alone on the GRPO output (float32 weights, as GRPO samples), ${RUNS:-3} runs (tokens/s):"
for i in $(seq ${RUNS:-3}); do
  nice "$dsv2" generate -m "$out/grpo" -p "What is 3 + 4?" -n "$new" --ignore-eos --stats --seed "$i" 2>&1 >/dev/null | tail -1
done
python3 - "$out/grpo/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
keys = ["sampling", "prefill", "reward", "reference", "policy", "optimizer", "step"]
print("step  sampled_tok  tok/s  " + "  ".join(f"{k:>9}" for k in keys))
for l in lines:
    s = l["seconds"]
    print(f"{l['step']:4d}  {l['completion_tokens']:11d}  {l['sampled_tokens_per_s']:5.0f}  " +
          "  ".join(f"{s[k]:9.2f}" for k in keys))
rest = lines[1:] or lines  # the first step also faults the weights in
tot = {k: sum(l["seconds"][k] for l in rest) for k in keys}
print("share of the step after step 0: " + ", ".join(f"{k} {100 * tot[k] / tot['step']:.0f}%" for k in keys[:-1]
                                                   if k != "prefill"))
rates = sorted(l["sampled_tokens_per_s"] for l in rest)
print(f"sampled tokens/s after step 0: {sum(l['completion_tokens'] for l in rest) / tot['sampling']:.0f} overall, "
      f"best step {rates[-1]:.0f}, median step {rates[len(rates) // 2]:.0f}")
PY
