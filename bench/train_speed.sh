#!/usr/bin/env bash
# Training throughput: dsv2 vs PyTorch eager (transformers model, same config.json, same batch
# shape, AdamW, 2 threads), side by side; plus the GFLOP/s of the GEMMs dsv2 trains with.
# Needs: pip install torch transformers; bash tools/setup.sh first.
# Usage: bash bench/train_speed.sh [build-dir]   (run on an otherwise idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
C=../shared/data/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BUILD/dsv2" tokenizer train --vocab-size 12000 --pre deepseek-v2 --out "$W/tok" $C/en/alice_in_wonderland.txt $C/zh/tang.txt 2>/dev/null
# The `small` preset without token dropping (transformers has none), same routing for both.
"$BUILD/dsv2" train --preset small --tokenizer "$W/tok" --data $C/en/alice_in_wonderland.txt --data $C/zh/tang.txt \
  --out "$W/dsv2" --steps 8 --seq-len 256 --batch-tokens 4096 --warmup 0 --eval-every 0 --checkpoint-every 0 \
  --devices 4 --device-limit 2 --threads 2 2>/dev/null
python3 - "$W/dsv2/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][2:]
def median(values):
    values = sorted(values)
    return values[len(values) // 2]
phases = {k: round(median(r["seconds"][k] for r in rows), 3) for k in rows[0]["seconds"]}
print(json.dumps({"impl": "dsv2", "tokens_per_s": round(median(r["tokens_per_s"] for r in rows), 1), "seconds": phases}))
PY
python3 bench/bench_train_torch.py "$W/dsv2" 16 256 6
"$BUILD/bench_gemm" 2
