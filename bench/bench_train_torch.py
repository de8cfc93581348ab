#!/usr/bin/env python3
"""PyTorch eager side of bench/train_speed.sh: the transformers model built from the same
config.json, trained on random tokens with the same batch shape, AdamW, 2 threads.
Prints one JSON line with the median tokens/s over the timed steps.

Usage: python3 bench/bench_train_torch.py CONFIG_DIR BATCH SEQ_LEN STEPS
"""
import json
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    cfg_dir, batch, seq_len, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(cfg_dir)
    model = AutoModelForCausalLM.from_config(config).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    times = []
    for step in range(steps + 2):
        ids = torch.randint(0, config.vocab_size, (batch, seq_len + 1))
        t = time.perf_counter()
        logits = model(input_ids=ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= 2:  # the first steps warm up allocators
            times.append(time.perf_counter() - t)
    t = sorted(times)[len(times) // 2]
    print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "tokens_per_s": round(batch * seq_len / t, 1),
                      "median_step_s": round(t, 3)}))


if __name__ == "__main__":
    main()
