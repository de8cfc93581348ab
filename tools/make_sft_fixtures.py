#!/usr/bin/env python3
"""SFT gradient fixtures from torch autograd on the transformers model.

Packed, masked batches as `dsv2 sft` builds them: each row holds several conversations, each with
RoPE positions from 0 and attention confined to itself, then padding; only "assistant" targets
count (the rest are -1). Writes tests/fixtures/sft/<case>/:
  config.json, model.safetensors   the weights (transformers' save_pretrained, fp32)
  batch.json                       batch, seq_len, inputs/targets/positions [batch * seq_len], loss0
  grads.safetensors                d(mean cross-entropy over the counted targets)/d(every parameter),
                                   named like the weights (experts split per expert)
The reference runs every conversation through the model on its own (nothing to leak) and sums its
masked cross-entropy; the loss is that sum over the number of counted targets in the batch. The
script also runs the packed rows in one call with position_ids and a block-diagonal causal mask
(4-D, additive) and checks that it agrees.
Usage: /work/venv-ref/bin/python tools/make_sft_fixtures.py (needs torch, transformers, safetensors)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, DeepseekV2Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_training_fixtures import COMMON, hf_named_grads, init_weights, start_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sft")
PAD = 3

# name: (fields over COMMON, the conversations' lengths in each row, seq_len)
CASES = {
    # Group routing, q compression and YaRN: positions restart inside rows of 40.
    "packed": (dict(q_lora_rank=24, n_shared_experts=1, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                    routed_scaling_factor=2.0, norm_topk_prob=False,
                    rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                                  "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}),
               [[11, 17, 9], [23, 14]], 40),
    # Past one 256-key tile: a conversation starts inside a 64-query block (120), one starts the
    # block at 256 (dsv2 skips the key tiles before it), and one spans both key tiles.
    "packed_tiles": (dict(q_lora_rank=24, n_shared_experts=1, topk_method="greedy", routed_scaling_factor=1.0,
                          norm_topk_prob=False, max_position_embeddings=512),
                     [[120, 136, 40], [60, 230]], 300),
}


def conversation(gen, n, vocab):
    """Token ids and a trained flag per token: prompt, answer, prompt, answer."""
    ids = torch.randint(4, vocab, (n,), generator=gen).tolist()
    cut = sorted(torch.randperm(n - 2, generator=gen)[:3].add(1).tolist())
    trained = [0] * n
    for t in range(n):
        trained[t] = 1 if (cut[0] <= t < cut[1]) or t >= cut[2] else 0
    return ids, trained


def build(name, extra, rows, T, seed):
    out, cfg = start_case(name, extra, seed, ROOT)
    gen = torch.Generator().manual_seed(seed)
    # eager attention: it takes the 4-D mask below
    model = AutoModelForCausalLM.from_config(DeepseekV2Config(**cfg), attn_implementation="eager").float()
    init_weights(model)
    model.save_pretrained(out)
    model.train()

    inputs, targets, positions, convs = [], [], [], []
    for lengths in rows:
        assert sum(lengths) <= T
        for n in lengths:
            ids, trained = conversation(gen, n, cfg["vocab_size"])
            tgt = [ids[t + 1] if t + 1 < n and trained[t + 1] else -1 for t in range(n)]
            convs.append((ids, tgt))
            inputs += ids
            targets += tgt
            positions += list(range(n))
        pad = T - sum(lengths)
        inputs += [PAD] * pad
        targets += [-1] * pad
        positions += list(range(pad))
    counted = sum(t >= 0 for t in targets)

    def separate_loss():
        total = 0.0
        for ids, tgt in convs:
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            total = total + torch.nn.functional.cross_entropy(logits, torch.tensor(tgt), ignore_index=-1,
                                                              reduction="sum")
        return total / counted

    model.zero_grad()
    loss0 = separate_loss()
    loss0.backward()
    save_file(hf_named_grads(model), os.path.join(out, "grads.safetensors"))

    with torch.no_grad():  # the same batch packed in one call: block-diagonal causal mask, positions from 0
        B = len(rows)
        pos = torch.tensor(positions).view(B, T)
        t = torch.arange(T)
        start = t[None, :] - pos  # [B, T] the first key of each query's conversation
        allowed = (t[None, None, :] <= t[None, :, None]) & (t[None, None, :] >= start[:, :, None])
        mask = torch.zeros(B, 1, T, T).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
        logits = model(input_ids=torch.tensor(inputs).view(B, T), position_ids=pos, attention_mask=mask).logits
        packed = torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), torch.tensor(targets), ignore_index=-1,
                                                   reduction="sum") / counted
    print(name, "loss0", round(loss0.item(), 6), "packed in one call", round(packed.item(), 6))
    assert abs(packed.item() - loss0.item()) < 1e-5, "transformers' packed call disagrees with the separate runs"
    with open(os.path.join(out, "batch.json"), "w") as f:
        json.dump({"batch": len(rows), "seq_len": T, "inputs": inputs, "targets": targets, "positions": positions,
                   "loss0": loss0.item()}, f)


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, (extra, rows, T)) in enumerate(CASES.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            build(name, extra, rows, T, 900 + i)


if __name__ == "__main__":
    main()
