#!/usr/bin/env bash
# dsv2 against ik_llama.cpp (the peer of ../shared/PERFORMANCE_TARGETS.md) on the
# same weights: a bf16 model directory (e.g. the random 4-layer DeepSeek-V2-Lite-
# shaped model `dsv2 init --like deepseek-v2-lite --layers 4` writes), its GGUF
# conversion by ik's convert_hf_to_gguf.py and that quantized by its
# llama-quantize (Q8_0, Q4_0); dsv2 quantizes the same bf16 model to its q8/q4
# (written next to it as BF16_DIR-q8, BF16_DIR-q4 when missing). ik runs with
# -rtr 0 and -rtr 1 (rows repacked at load) and the better median of the two is
# its figure. Runs alternate between the engines, ROUNDS (3) rounds, medians.
# Both are measured warm: dsv2 bench --warmup prefills the prompt once before
# the timed one, llama-bench runs each test twice (-r 2) and its second sample
# is taken (the first prompt after loading also faults in each engine's
# buffers, which on these VMs costs 0.1-0.3 s and varies with the host).
# dsv2's q8/q4 run three ways: as by default (on CPUs with AVX512-BF16 the
# weights widened to bf16 for a prompt's products), and by the integer GEMM with
# two int8 terms per activation (--activation-terms 2, rows "2t") and with one
# (llama.cpp's arithmetic, rows "1t"); every dsv2 row again with --repack (rows
# repacked at load, as ik's -rtr 1; rows marked "r").
#
# Usage: bash bench/peer_side_by_side.sh IK_BUILD_DIR BF16_DIR BF16.gguf Q8_0.gguf Q4_0.gguf
#   IK_BUILD_DIR  an ik_llama.cpp CMake build with bin/llama-bench
# The GGUF conversion itself is not scripted here (it needs the peer's Python
# package); docs/PERFORMANCE.md lists the commands used.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/peer_args.sh "$@"
dsv2=build/dsv2
rounds=${ROUNDS:-3}
prompt=${PROMPT:-512} gen=${GEN:-64}
out=$(mktemp)
for round in $(seq "$rounds"); do
  for t in bf16 q8 q4; do
    cat "${dsv2_dir[$t]}/model.safetensors" "${gguf[$t]}" >/dev/null
    for terms in d 2 1; do
      [[ $t == bf16 && $terms != d ]] && continue
      for repack in "" r; do
        $dsv2 bench -m "${dsv2_dir[$t]}" --prompt "$prompt" --gen "$gen" --threads 2 \
          $([[ $terms != d ]] && echo --activation-terms $terms) ${repack:+--repack} --warmup --json |
          python3 -c 'import json,sys; j=json.load(sys.stdin); print(sys.argv[1], "dsv2-" + sys.argv[2], j["prefill_tokens_per_s"], j["decode_tokens_per_s"])' "$t" "$terms$repack" >>"$out"
      done
    done
    for rtr in 0 1; do
      "$ik/bin/llama-bench" -m "${gguf[$t]}" -t 2 -mla 3 -fa 1 -fmoe 1 -rtr $rtr -p "$prompt" -n "$gen" -r 2 -o json 2>/dev/null |
        python3 -c '
import json, sys
runs = json.load(sys.stdin)
pp = next(r["samples_ts"][-1] for r in runs if r["n_prompt"] > 0)
tg = next(r["samples_ts"][-1] for r in runs if r["n_gen"] > 0)
print(sys.argv[1], sys.argv[2], pp, tg)' "$t" "ik-rtr$rtr" >>"$out"
    done
  done
done
python3 - "$out" "$prompt" "$gen" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"median of {len(rows) // 20} rounds; prefill {sys.argv[2]} tokens, decode {sys.argv[3]} tokens, 2 threads;"
      " ik: the better of -rtr 0 / -rtr 1 (which one in brackets)")
print(f"{'weights':8} {'dsv2 prefill':>13} {'ik prefill':>15} {'ratio':>6}   {'dsv2 decode':>12} {'ik decode':>14} {'ratio':>6}")
for t in ("bf16", "q8", "q4"):
    med = lambda eng, i: st.median(float(r[i]) for r in rows if r[0] == t and r[1] == eng)
    def ik(i):
        return max((med(f"ik-rtr{r}", i), r) for r in (0, 1))
    (ip, ipr), (idd, idr) = ik(2), ik(3)
    for terms in ("d", "dr") if t == "bf16" else ("d", "dr", "2", "2r", "1", "1r"):
        dp, dd = med("dsv2-" + terms, 2), med("dsv2-" + terms, 3)
        name = t + ("" if terms[0] == "d" else f" {terms[0]}t") + (" r" if terms.endswith("r") else "")
        print(f"{name:8} {dp:13.1f} {ip:11.1f} [{ipr}] {dp / ip:6.2f}   {dd:12.2f} {idd:10.2f} [{idr}] {dd / idd:6.2f}")
PY
rm -f "$out"
