# The arguments bench/peer_side_by_side.sh and bench/peer_decode.sh share,
# sourced by both from the repository root with their "$@":
#   IK_BUILD_DIR BF16_DIR BF16.gguf Q8_0.gguf Q4_0.gguf
# Checks them and sets ik (the build), gguf[type] and dsv2_dir[type] for
# type bf16, q8, q4; dsv2's q8/q4 sit next to BF16_DIR as BF16_DIR-q8 and
# BF16_DIR-q4 and are written by `dsv2 quantize` when missing.
script=$(basename "$0")
if [[ $# -ne 5 ]]; then
  echo "usage: bash bench/$script IK_BUILD_DIR BF16_DIR BF16.gguf Q8_0.gguf Q4_0.gguf" >&2
  exit 2
fi
ik=$1 bf16_dir=$2
declare -A gguf=([bf16]="$3" [q8]="$4" [q4]="$5")
for f in "$ik/bin/llama-bench" "$bf16_dir/config.json" "$3" "$4" "$5"; do
  [[ -e "$f" ]] || { echo "$script: $f: not found" >&2; exit 1; }
done
for t in q8 q4; do
  [[ -f "$bf16_dir-$t/model.safetensors" ]] || build/dsv2 quantize -m "$bf16_dir" -o "$bf16_dir-$t" --type $t >/dev/null
done
declare -A dsv2_dir=([bf16]="$bf16_dir" [q8]="$bf16_dir-q8" [q4]="$bf16_dir-q4")
