#!/usr/bin/env python3
"""Draws the curves of one or more `dsv2 train` runs from their metrics.jsonl as a PNG:
training and validation loss, the balance losses, expert-load spread (MaxVio) and the
dropped share.

Usage: python3 tools/plot_training.py OUT.png RUN_DIR[:LABEL] [RUN_DIR[:LABEL] ...]
Needs: pip install matplotlib
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run_dir):
    rows = []
    with open(run_dir + "/metrics.jsonl") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_loss, ax_balance), (ax_vio, ax_drop) = axes
    for spec in runs:
        run_dir, _, label = spec.partition(":")
        label = label or run_dir
        rows = load(run_dir)
        tokens = [r["tokens"] / 1e6 for r in rows]
        ax_loss.plot(tokens, [r["loss"] for r in rows], alpha=0.35, label=f"{label} train")
        val = [(r["tokens"] / 1e6, r["val_loss"]) for r in rows if "val_loss" in r]
        if val:
            ax_loss.plot(*zip(*val), marker="o", label=f"{label} validation")
        if any(r.get("balance_loss", 0) for r in rows):
            for key in ("expert_balance", "device_balance", "comm_balance"):
                ax_balance.plot(tokens, [r[key] for r in rows], label=f"{label} {key}")
        if any(r.get("max_violation", 0) for r in rows):
            ax_vio.plot(tokens, [r["max_violation"] for r in rows], label=label)
            ax_drop.plot(tokens, [100 * r["dropped_share"] for r in rows], label=label)
    ax_loss.set(title="cross-entropy (nats/token)", xlabel="tokens (M)")
    ax_balance.set(title="balance losses (unweighted; 1.0 = perfectly balanced)", xlabel="tokens (M)")
    ax_vio.set(title="expert load MaxVio (max/mean - 1)", xlabel="tokens (M)")
    ax_drop.set(title="dropped assignments (%)", xlabel="tokens (M)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main()
