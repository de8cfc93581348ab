#!/usr/bin/env bash
# dsv2 against ik_llama.cpp (the peer of ../shared/PERFORMANCE_TARGETS.md) on the
# same weights: a random 4-layer model with DeepSeek-V2-Lite's shapes written by
# `dsv2 init` in bf16, converted to GGUF by ik's convert_hf_to_gguf.py and
# quantized by its llama-quantize (Q8_0, Q4_0); dsv2 quantizes the same bf16
# model to its q8/q4. Runs alternate between the engines, 3 rounds, medians.
#
# Usage: bash bench/peer_side_by_side.sh IK_BUILD_DIR MODELS_DIR
#   IK_BUILD_DIR  an ik_llama.cpp CMake build with bin/llama-bench and bin/llama-quantize
#   MODELS_DIR    holds v2-lite-4layers-bf16-tok (the bf16 model plus any tokenizer.json,
#                 which the GGUF converter needs) and receives the converted models.
# The GGUF conversion itself is not scripted here (it needs the peer's Python
# package); docs/PERFORMANCE.md lists the commands used.
set -euo pipefail
cd "$(dirname "$0")/.."
ik=$1 models=$2
dsv2=build/dsv2
rounds=${ROUNDS:-3}
prompt=${PROMPT:-512} gen=${GEN:-64}

for t in q8 q4; do
  [[ -f "$models/v2-lite-4layers-from-bf16-$t/model.safetensors" ]] ||
    $dsv2 quantize -m "$models/v2-lite-4layers-bf16-tok" -o "$models/v2-lite-4layers-from-bf16-$t" --type $t >/dev/null
done

declare -A dsv2_dir=([bf16]="$models/v2-lite-4layers-bf16-tok" [q8]="$models/v2-lite-4layers-from-bf16-q8"
                     [q4]="$models/v2-lite-4layers-from-bf16-q4")
declare -A gguf=([bf16]="$models/v2lite4-bf16.gguf" [q8]="$models/v2lite4-Q8_0.gguf" [q4]="$models/v2lite4-Q4_0.gguf")
out=$(mktemp)
for round in $(seq "$rounds"); do
  for t in bf16 q8 q4; do
    cat "${dsv2_dir[$t]}/model.safetensors" "${gguf[$t]}" >/dev/null
    $dsv2 bench -m "${dsv2_dir[$t]}" --prompt "$prompt" --gen "$gen" --threads 2 --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(sys.argv[1], "dsv2", j["prefill_tokens_per_s"], j["decode_tokens_per_s"])' "$t" >>"$out"
    "$ik/bin/llama-bench" -m "${gguf[$t]}" -t 2 -mla 3 -fa 1 -fmoe 1 -p "$prompt" -n "$gen" -r 1 -o json 2>/dev/null |
      python3 -c '
import json, sys
runs = json.load(sys.stdin)
pp = next(r["avg_ts"] for r in runs if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in runs if r["n_gen"] > 0)
print(sys.argv[1], "ik", pp, tg)' "$t" >>"$out"
  done
done
python3 - "$out" "$prompt" "$gen" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"median of {len(rows) // 6} rounds; prefill {sys.argv[2]} tokens, decode {sys.argv[3]} tokens, 2 threads")
print(f"{'weights':8} {'dsv2 prefill':>13} {'ik prefill':>11} {'ratio':>6}   {'dsv2 decode':>12} {'ik decode':>10} {'ratio':>6}")
for t in ("bf16", "q8", "q4"):
    med = lambda eng, i: st.median(float(r[i]) for r in rows if r[0] == t and r[1] == eng)
    dp, ip, dd, idd = med("dsv2", 2), med("ik", 2), med("dsv2", 3), med("ik", 3)
    print(f"{t:8} {dp:13.1f} {ip:11.1f} {dp / ip:6.2f}   {dd:12.2f} {idd:10.2f} {dd / idd:6.2f}")
PY
rm -f "$out"
