#!/usr/bin/env bash
# dsv2 train across two "machines": two network namespaces on this host joined
# by a veth pair, Open MPI's TCP transport between them (no shared memory), and
# a launch agent that enters the other namespace where mpirun would use ssh.
# The 2-rank expert-parallel run must give the same bits as the same job on one
# host: every sum in dsv2's communication layer is in rank order, so the
# transport cannot change the result.
#
# Usage: tests/dist/two_hosts.sh DSV2_BINARY TOKENIZER_DIR
# Needs root and iproute2; exits 77 (skipped) without them, unless
# DSV2_REQUIRE_TWO_HOSTS=1 (CI), where that is a failure.
set -euo pipefail
dsv2=$(realpath "$1")
tokenizer=$(realpath "$2")

skip() {
  echo "two_hosts: $1" >&2
  if [[ "${DSV2_REQUIRE_TWO_HOSTS:-0}" == 1 ]]; then exit 1; fi
  exit 77
}
if [[ "$(id -u)" != 0 ]]; then
  if [[ "${DSV2_REQUIRE_TWO_HOSTS:-0}" == 1 ]] && command -v sudo >/dev/null; then exec sudo -E bash "$0" "$@"; fi
  skip "needs root (ip netns)"
fi
command -v ip >/dev/null || skip "needs iproute2 (ip)"
command -v mpirun >/dev/null || skip "needs Open MPI (mpirun)"

work=$(mktemp -d /tmp/dsv2_two_hosts.XXXXXX)
id=$(( $$ % 100000 ))
host_a="dsv2a$id" host_b="dsv2b$id"
subnet="10.$(( 200 + $$ % 50 )).$(( $$ % 250 ))"
addr_a="$subnet.1" addr_b="$subnet.2"
cleanup() {
  ip netns del "$host_a" 2>/dev/null || true
  ip netns del "$host_b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$host_a"
ip netns add "$host_b"
ip link add "va$id" type veth peer name "vb$id"
ip link set "va$id" netns "$host_a"
ip link set "vb$id" netns "$host_b"
ip -n "$host_a" addr add "$addr_a/24" dev "va$id"
ip -n "$host_b" addr add "$addr_b/24" dev "vb$id"
for ns in "$host_a" "$host_b"; do
  ip -n "$ns" link set lo up
done
ip -n "$host_a" link set "va$id" up
ip -n "$host_b" link set "vb$id" up

# Open MPI runs "AGENT HOST COMMAND..." to start its daemon on HOST.
cat >"$work/agent" <<EOF
#!/bin/sh
host=\$1; shift
case "\$host" in
  $addr_a) ns=$host_a ;;
  $addr_b) ns=$host_b ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
chmod +x "$work/agent"

# Training text of the tests' kind: a small grammar, generated here.
python3 - "$work/text.txt" <<'EOF'
import random, sys
random.seed(7)
s = ["the old sailor", "a young girl", "the king", "my brother", "the little dog", "a stranger", "the farmer"]
v = ["walked to", "looked at", "spoke of", "waited for", "ran past", "dreamed of", "found"]
o = ["the quiet harbour", "a silver key", "the green hills", "the long road", "the river", "a letter", "the garden"]
with open(sys.argv[1], "w") as f:
    f.write("\n".join(f"{random.choice(s).capitalize()} {random.choice(v)} {random.choice(o)}." for _ in range(6000)))
EOF

train="train --preset tiny --tokenizer $tokenizer --data $work/text.txt --steps 12 --seq-len 64 --batch-tokens 2048
  --lr 3e-4 --eval-every 6 --checkpoint-every 5 --threads 1 --alpha1 0.003 --alpha2 0.05 --alpha3 0.02
  --capacity-factor 1.0 --expert-parallel 2 --device-limit 1"

echo "== one host, 2 ranks"
mpirun --allow-run-as-root --oversubscribe -np 2 "$dsv2" $train --out "$work/one_host" >/dev/null

echo "== two hosts ($addr_a, $addr_b), TCP"
ip netns exec "$host_a" mpirun --allow-run-as-root -np 2 --host "$addr_a:1,$addr_b:1" \
  --mca plm_rsh_agent "$work/agent" --mca btl tcp,self \
  --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  -x ASAN_OPTIONS -x UBSAN_OPTIONS -x PATH \
  "$dsv2" $train --out "$work/two_hosts" >"$work/two_hosts.log" 2>&1 || { cat "$work/two_hosts.log"; exit 1; }

python3 - "$work/one_host" "$work/two_hosts" <<'EOF'
import json, sys
a, b = sys.argv[1], sys.argv[2]
la = [json.loads(l) for l in open(a + "/metrics.jsonl")]
lb = [json.loads(l) for l in open(b + "/metrics.jsonl")]
assert len(la) == len(lb) == 12, (len(la), len(lb))
assert all(x["ranks"] == 2 and x["alltoall_bytes"] > 0 for x in lb), "not a 2-rank expert-parallel run"
for x, y in zip(la, lb):
    assert x["loss"] == y["loss"], (x["step"], x["loss"], y["loss"])
    assert x["alltoall_bytes"] == y["alltoall_bytes"], x["step"]
print(f"losses identical over {len(la)} steps; final loss {la[-1]['loss']:.6f}")
EOF
cmp "$work/one_host/model.safetensors" "$work/two_hosts/model.safetensors"
echo "two_hosts: the weights trained across the two namespace hosts equal the one-host run's, bit for bit"

echo "== inference split over the two hosts (logits of a prefill and decoded tokens)"
logits="logits -m $work/one_host --ids 1,5,9,17,3,8,2,11,40,41,7,3 --prefill 5"
mpirun --allow-run-as-root --oversubscribe -np 2 "$dsv2" $logits -o "$work/logits_one_host.f32"
ip netns exec "$host_a" mpirun --allow-run-as-root -np 2 --host "$addr_a:1,$addr_b:1" \
  --mca plm_rsh_agent "$work/agent" --mca btl tcp,self \
  --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  -x ASAN_OPTIONS -x UBSAN_OPTIONS -x PATH \
  "$dsv2" $logits -o "$work/logits_two_hosts.f32" >"$work/logits.log" 2>&1 || { cat "$work/logits.log"; exit 1; }
cmp "$work/logits_one_host.f32" "$work/logits_two_hosts.f32"
echo "two_hosts: the logits computed across the two namespace hosts equal the one-host run's, bit for bit"
