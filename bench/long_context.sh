#!/usr/bin/env bash
# Decode time per token after 1K and after 16K cached tokens (issue 6's 16K goal),
# full DeepSeek-V2-Lite shapes with q8 weights and a q8 latent cache, with the
# AMX tile products on and off (DSV2_AMX; "on" falls back to float32 GEMMs where
# the CPU has no AMX). Three interleaved rounds; prints every run, then medians.
# Usage: bash bench/long_context.sh [MODEL_DIR]   (writes the 17.7 GB model once if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-/tmp/dsv2-bench-models/v2-lite-q8}
[[ -f "$model/model.safetensors" ]] || build/dsv2 init --like deepseek-v2-lite --dtype q8 -o "$model" >/dev/null
cat "$model/model.safetensors" >/dev/null  # from the page cache during the runs
for round in 1 2 3; do
  for amx in 1 0; do
    for ctx in 1024 16384; do
      DSV2_AMX=$amx build/dsv2 bench -m "$model" --prompt 16 --ctx $ctx --gen 32 --cache-type q8 --json |
        python3 -c 'import json, sys; r = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], r["decode_tokens_per_s"])' $amx $ctx
    done
  done
done | python3 -c '
import statistics as st, sys
runs = {}
for line in sys.stdin:
    amx, ctx, tps = line.split()
    print("amx=%s ctx=%-5s %.2f tok/s" % (amx, ctx, float(tps)))
    runs.setdefault((amx, ctx), []).append(float(tps))
for amx in ("1", "0"):
    short, long = st.median(runs[(amx, "1024")]), st.median(runs[(amx, "16384")])
    print("AMX %s: median 1K %.2f tok/s, 16K %.2f tok/s: 16K token = %.2fx the 1K token" % ("on " if amx == "1" else "off", short, long, short / long))'
