#!/usr/bin/env bash
# Tokenizer speed, dsv2 vs Hugging Face tokenizers, side by side on this machine.
# Needs: pip install tokenizers; the build with bench_tokenizer (bash tools/setup.sh).
# Usage: bash bench/tokenizer.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
C=../shared/data/corpus
EN="$C/en/moby_dick.txt $C/en/dracula.txt $C/en/pride_and_prejudice.txt"
ZH="$C/zh/tang.txt"
TRAIN10="$C/en/shakespeare.txt $C/en/moby_dick.txt $C/en/great_expectations.txt $C/zh/ci.txt $C/zh/tang.txt"
TOK=$(mktemp -d)
trap 'rm -rf "$TOK"' EXIT
# The tokenizer both sides encode with: 32K, DeepSeek-V2 rules, trained by dsv2 on 10 MB.
"$BUILD/dsv2" tokenizer train --vocab-size 32000 --pre deepseek-v2 --out "$TOK" $TRAIN10 2>/dev/null
echo "encode, English (~3 MB), one thread:"
"$BUILD/bench_tokenizer" encode "$TOK" $EN
python3 bench/bench_tokenizer_hf.py encode "$TOK" $EN
echo "encode, Chinese (~3.8 MB), one thread:"
"$BUILD/bench_tokenizer" encode "$TOK" $ZH
python3 bench/bench_tokenizer_hf.py encode "$TOK" $ZH
echo "encode line by line (English + Chinese), one thread:"
"$BUILD/bench_tokenizer" encode-lines "$TOK" $EN $ZH
python3 bench/bench_tokenizer_hf.py encode-lines "$TOK" $EN $ZH
echo "train 32K vocabulary on ~12 MB:"
"$BUILD/bench_tokenizer" train 32000 $TRAIN10
python3 bench/bench_tokenizer_hf.py train 32000 $TRAIN10
