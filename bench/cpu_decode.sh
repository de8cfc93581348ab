#!/usr/bin/env bash
# CPU inference figures of docs/PERFORMANCE.md (issue 6): prefill and decode
# tokens/s against the measured-bandwidth roofline, on random-weight models with
# DeepSeek-V2-Lite's exact shapes (dsv2 init --like). Medians of 3 runs.
# Usage: bash bench/cpu_decode.sh [MODELS_DIR]   (needs ~33 GB of disk for all models)
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-/tmp/dsv2-bench-models}
dsv2=build/dsv2
mkdir -p "$models"

ensure_model() {  # name, dtype, extra init args...
  local dir="$models/$1" dtype=$2
  shift 2
  [[ -f "$dir/model.safetensors" ]] || $dsv2 init --like deepseek-v2-lite --dtype "$dtype" "$@" -o "$dir" >/dev/null
  cat "$dir/model.safetensors" >/dev/null  # from the page cache, not the disk, during the runs
}

median_of_3() {  # label, bench args...
  local label=$1
  shift
  for _ in 1 2 3; do $dsv2 bench "$@" --json; done | python3 -c '
import json, statistics as st, sys
rows = [json.loads(l) for l in sys.stdin]
m = lambda k: st.median(r[k] for r in rows)
print("%-32s prefill %7.1f tok/s %6.1f GFLOP/s  decode %6.2f tok/s  roofline %6.2f tok/s  share %5.1f%%  bandwidth %5.1f GB/s  weights/token %.3f GB  cache/token %.1f MB"
      % (sys.argv[1], m("prefill_tokens_per_s"), m("prefill_flops_per_s") / 1e9, m("decode_tokens_per_s"), m("roofline_tokens_per_s"), 100 * m("roofline_share"),
         m("bandwidth_bytes_per_s") / 1e9, m("weight_bytes_per_token") / 1e9, m("cache_bytes_per_token") / 1e6))' "$label"
}

for dtype in bf16 q8 q4 fp8; do
  ensure_model "v2-lite-4layers-$dtype" "$dtype" --layers 4
  median_of_3 "4 layers, $dtype" -m "$models/v2-lite-4layers-$dtype" --prompt 512 --gen 32
done
for dtype in q8 q4; do
  ensure_model "v2-lite-$dtype" "$dtype"
  median_of_3 "27 layers, $dtype" -m "$models/v2-lite-$dtype" --prompt 16 --gen 32
  [[ $dtype == q8 ]] || continue
  median_of_3 "27 layers, q8, 1K context" -m "$models/v2-lite-q8" --prompt 16 --ctx 1024 --gen 32
  for cache in f32 q8 q4; do
    median_of_3 "27 layers, q8, 16K, $cache cache" -m "$models/v2-lite-q8" --prompt 16 --ctx 16384 --gen 32 --cache-type $cache
  done
done
