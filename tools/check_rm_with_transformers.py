#!/usr/bin/env python3
"""Loads a reward model written by `dsv2 rm` with transformers' DeepseekV2ForSequenceClassification
(or V3's, as config.json names it) and checks that `dsv2 rm-score` gives the same scores on the
same token ids: |diff| <= 1e-4 * max(1, |score|) for every sequence.

Usage: python3 tools/check_rm_with_transformers.py RM_DIR DSV2_BINARY PAIRS.jsonl [MAX_LINES]
"""
import json
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForSequenceClassification


def main():
    d, dsv2, data = sys.argv[1], sys.argv[2], sys.argv[3]
    max_lines = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    with open(data, encoding="utf-8") as f:
        lines = [l for l in f if l.strip()][:max_lines]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        out = subprocess.run([dsv2, "rm-score", "-m", d, "--data", f.name, "--ids"], check=True, capture_output=True,
                             text=True).stdout
    # lm_head.weight, which dsv2 keeps in the directory, is reported as unused: the class has no LM head.
    model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    worst, n = 0.0, 0
    with torch.no_grad():
        for row in map(json.loads, out.splitlines()):
            pairs = [("chosen", "chosen_ids"), ("rejected", "rejected_ids")] if "chosen" in row else [("score", "ids")]
            for key, ids in pairs:
                ref = model(input_ids=torch.tensor([row[ids]])).logits[0, 0].item()
                worst = max(worst, abs(row[key] - ref) / max(1.0, abs(ref)))
                n += 1
    ok = worst <= 1e-4
    print(f"{n} sequences: max |dsv2 - transformers| / max(1, |score|) = {worst:.3g}: {'agree' if ok else 'DISAGREE'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
