#!/usr/bin/env python3
"""Draws the curves of one or more `dsv2 grpo` runs from their metrics.jsonl as a PNG: the mean
reward of the sampled completions (with a moving average), the KL to the reference model, the
share of clipped tokens and the completion length.

Usage: python3 tools/plot_grpo.py OUT.png RUN_DIR[:LABEL] [RUN_DIR[:LABEL] ...] [--window N]
Needs: pip install matplotlib
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="RUN_DIR[:LABEL]")
    ap.add_argument("--window", type=int, default=10, help="steps in the reward's moving average")
    args = ap.parse_args()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_reward, ax_kl), (ax_clip, ax_len) = axes
    for run in args.runs:
        run_dir, _, label = run.partition(":")
        rows = load(run_dir)
        label = label or os.path.basename(os.path.normpath(run_dir))
        steps = [r["step"] for r in rows]
        rewards = [r["reward_mean"] for r in rows]
        line, = ax_reward.plot(steps, rewards, alpha=0.3)
        ax_reward.plot(steps, moving_average(rewards, args.window), color=line.get_color(),
                       label=f"{label} (mean of {args.window} steps)")
        ax_kl.plot(steps, [r["kl"] for r in rows], label=label)
        ax_clip.plot(steps, [r["clip_fraction"] for r in rows], label=label)
        ax_len.plot(steps, [r["completion_tokens"] for r in rows], label=label)
    for ax, title in ((ax_reward, "reward of the sampled completions"), (ax_kl, "KL to the reference (per token)"),
                      (ax_clip, "clipped share of tokens"), (ax_len, "completion tokens per step")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.out)  # never a half-written PNG under the final name


if __name__ == "__main__":
    main()
