#!/usr/bin/env bash
# Training at length (docs/LONG_CONTEXT.md): peak RSS and step time of one training step of one
# sequence of L tokens (dsv2-mini with YaRN x64, so 16K positions are allowed); with OLD_DSV2 (a
# binary from before a change), interleaved runs of both at T = 256 (`--preset small`, 14 steps of
# 4096 tokens, median step of each run).
# Usage: bash bench/train_by_length.sh [LENGTHS] [OLD_DSV2]   e.g. "2048 16384" /work/base/build/dsv2
set -euo pipefail
cd "$(dirname "$0")/.."
C=../shared/data/corpus
lengths=${1:-"2048 4096 8192 16384"}
old=${2:-}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
build/dsv2 pretokenize --tokenizer models/dsv2-mini --out "$W/data.bin" $C/en/*.txt $C/zh/*.txt >/dev/null
for L in $lengths; do
  /usr/bin/time -f "L=$L peak_rss_kb=%M" build/dsv2 train --init-from models/dsv2-mini --rope-scaling yarn \
    --rope-factor 64 --original-max 256 --data "$W/data.bin" --out "$W/t$L" --steps 1 --seq-len $L \
    --batch-tokens $L --eval-every 0 --checkpoint-every 0 --threads 2 2>&1 | grep peak_rss
  python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print("  step %.1f s, attention %.1f s" % (r["seconds"]["step"], r["seconds"]["attention_forward"] + r["seconds"]["attention_backward"]))' "$W/t$L/metrics.jsonl"
done
[[ -n "$old" ]] || exit 0
median_run() {  # binary, label
  rm -rf "$W/ab"
  "$1" train --preset small --tokenizer models/dsv2-mini --data $C/en/alice_in_wonderland.txt --data $C/zh/tang.txt \
    --out "$W/ab" --steps 14 --seq-len 256 --batch-tokens 4096 --warmup 0 --eval-every 0 --checkpoint-every 0 \
    --devices 4 --device-limit 2 --threads 2 2>/dev/null
  python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][2:]
print(sys.argv[2], round(statistics.median(r["tokens_per_s"] for r in rows)))' "$W/ab/metrics.jsonl" "$2"
}
for i in 1 2 3 4 5 6; do median_run "$old" old; median_run build/dsv2 new; done
