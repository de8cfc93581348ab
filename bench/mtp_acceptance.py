#!/usr/bin/env python3
"""MTP drafting on held-out text (issue 19 part 4; docs/PERFORMANCE.md).

Prompts are windows of the held-out part of each corpus file (its last 2%, cut
at a line boundary, as `dsv2 train --validation-share 0.02` holds it out).
For each prompt, greedy `dsv2 generate --stats` runs plain and with
`--speculative mtp --draft N` for every N, alternating, for --passes passes.
Reports the acceptance rate (accepted / drafted drafts, over all prompts) and
the median over passes of the tokens/s summed over prompts (prefill included),
and checks that speculative output equals plain output.

Usage: python3 bench/mtp_acceptance.py -m MODEL_DIR [--corpus DIR] [--prompts 40]
       [--tokens 64] [--drafts 1,2] [--passes 3] [--dsv2 build/dsv2] [--threads 2]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys


def held_out_prompts(corpus, count, chars):
    files = sorted(glob.glob(os.path.join(corpus, "en", "*.txt"))) + sorted(glob.glob(os.path.join(corpus, "zh", "*.txt")))
    tails = []
    for path in files:
        text = open(path, encoding="utf-8").read()
        cut = text.find("\n", int(len(text) * 0.98))
        tails.append(text[cut + 1:] if cut >= 0 else "")
    prompts = []
    per_file = -(-count // len(tails))  # rounded up; the list is cut to `count`
    for tail in tails:
        lines = [i + 1 for i, ch in enumerate(tail) if ch == "\n"]
        starts = [s for s in lines if tail[s:s + 1].strip() and len(tail) - s > chars]
        for j in range(per_file):
            if not starts:
                break
            s = starts[(j * len(starts)) // per_file]
            prompts.append(tail[s:s + chars].rsplit(" ", 1)[0] if " " in tail[s:s + chars] else tail[s:s + chars])
    return prompts[:count]


def run(args, prompt, draft):
    cmd = [args.dsv2, "generate", "-m", args.model, "--prompt", prompt, "-n", str(args.tokens), "--temperature", "0",
           "--ignore-eos", "--stats", "--threads", str(args.threads)]
    if draft:
        cmd += ["--speculative", "mtp", "--draft", str(draft)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("dsv2 generate failed: " + p.stderr.strip())
    stats = json.loads(p.stderr.strip().splitlines()[-1])
    return p.stdout, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "corpus"))
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--chars", type=int, default=160)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--drafts", default="1,2")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--dsv2", default="build/dsv2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    prompts = held_out_prompts(args.corpus, args.prompts, args.chars)
    drafts = [0] + [int(d) for d in args.drafts.split(",")]
    speed = {d: [] for d in drafts}
    drafted = {d: 0 for d in drafts}
    accepted = {d: 0 for d in drafts}
    mismatches = 0
    for p in range(args.passes):
        tokens = {d: 0 for d in drafts}
        seconds = {d: 0.0 for d in drafts}
        for prompt in prompts:
            plain_text = None
            for d in drafts:
                text, s = run(args, prompt, d)
                tokens[d] += s["tokens"]
                seconds[d] += s["tokens"] / s["tokens_per_s"]
                if p == 0:
                    drafted[d] += s["drafted"]
                    accepted[d] += s["accepted"]
                if d == 0:
                    plain_text = text
                elif text != plain_text:
                    mismatches += 1
        for d in drafts:
            speed[d].append(tokens[d] / seconds[d])
        print("pass %d: %s" % (p + 1, "  ".join("%s %.1f tok/s" % ("plain" if d == 0 else "draft %d" % d, speed[d][-1])
                                               for d in drafts)), flush=True)
    plain = statistics.median(speed[0])
    print("%d held-out prompts (%d en+zh files), %d greedy tokens each, %d passes" %
          (len(prompts), len(glob.glob(os.path.join(args.corpus, "*", "*.txt"))), args.tokens, args.passes))
    print("plain                 median %.1f tok/s" % plain)
    for d in drafts[1:]:
        print("--speculative --draft %d median %.1f tok/s = %.2fx plain; acceptance %.1f%% (%d of %d drafts)" %
              (d, statistics.median(speed[d]), statistics.median(speed[d]) / plain,
               100.0 * accepted[d] / max(1, drafted[d]), accepted[d], drafted[d]))
    print("speculative output differing from plain: %d of %d runs" % (mismatches, len(prompts) * args.passes * (len(drafts) - 1)))


if __name__ == "__main__":
    main()
