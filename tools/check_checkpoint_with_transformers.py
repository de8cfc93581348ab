#!/usr/bin/env python3
"""Loads a model directory written by `dsv2 train` with transformers and checks that
`dsv2 logits` gives the same logits (max |diff| <= 1e-4 * max |logit|).

Usage: python3 tools/check_checkpoint_with_transformers.py DIR DSV2_BINARY [TEXT]
"""
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    d, dsv2 = sys.argv[1], sys.argv[2]
    text = sys.argv[3] if len(sys.argv) > 3 else "It was the best of times, it was the worst of times. 床前明月光，疑是地上霜。"
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok.encode(text)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    with tempfile.NamedTemporaryFile() as f:
        subprocess.run([dsv2, "logits", "-m", d, "--ids", " ".join(map(str, ids)), "-o", f.name], check=True)
        got = np.fromfile(f.name, "<f4").reshape(len(ids), -1)
    diff = np.abs(got - ref).max()
    scale = np.abs(ref).max()
    ok = diff <= 1e-4 * scale
    print(f"{len(ids)} tokens: max |diff| {diff:.3g}, max |logit| {scale:.3g}: {'agree' if ok else 'DISAGREE'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
