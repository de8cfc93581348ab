#!/usr/bin/env python3
"""GRPO gradient fixtures from torch autograd on the transformers model.

One prompt and G completions of different lengths, laid out as `dsv2 grpo` trains on them: row i is
prompt ++ completion_i without its last token, the targets are the completion's tokens (-1 elsewhere),
rows padded to the longest. With fixed rewards, reference log-probabilities and old log-probabilities
(given, not computed: the old ones put ratios on both sides of the clip range, as with μ > 1), torch
computes DeepSeekMath's objective
  J = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ·A_i, clip(ρ, 1−ε, 1+ε)·A_i) − β·(π_ref/π − log(π_ref/π) − 1) ],
  ρ = exp(logπ − logπ_old),  A_i = (r_i − mean r) / (std r + 1e-4)  (torch.std: Bessel),
and the gradient of −J with respect to every parameter. Writes tests/fixtures/grpo/<case>/:
  config.json, model.safetensors   the weights (fp32)
  case.json                        prompt, completions, rows (inputs/targets), rewards, advantages,
                                   ref_logp/old_logp per row position, beta, eps, J, clipped count
  grads.safetensors                d(−J)/d(every parameter), named like the weights
Usage: /work/venv-ref/bin/python tools/make_grpo_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, DeepseekV2Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_training_fixtures import hf_named_grads, init_weights, start_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "grpo")
PAD = 3
CASES = {
    # name: (fields over COMMON, prompt length, completion lengths, rewards, beta, eps)
    "group": (dict(q_lora_rank=24, n_shared_experts=1, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                   routed_scaling_factor=2.0, norm_topk_prob=False),
              7, [5, 9, 3, 12], [1.0, 0.0, 0.5, 0.0], 0.04, 0.2),
}


def build(name, extra, prompt_len, lengths, rewards, beta, eps, seed):
    out, cfg = start_case(name, extra, seed, ROOT)
    model = AutoModelForCausalLM.from_config(DeepseekV2Config(**cfg)).float()
    init_weights(model)
    model.save_pretrained(out)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    V = cfg["vocab_size"]
    prompt = torch.randint(4, V, (prompt_len,), generator=gen).tolist()
    completions = [torch.randint(4, V, (n,), generator=gen).tolist() for n in lengths]
    G = len(completions)
    T = max(prompt_len + n - 1 for n in lengths)
    inputs, targets = [], []
    for c in completions:
        full = prompt + c
        row_in = full[:-1] + [PAD] * (T - len(full) + 1)
        row_tg = [full[t + 1] if t + 1 >= prompt_len and t + 1 < len(full) else -1 for t in range(T)]
        inputs.append(row_in)
        targets.append(row_tg)
    r = torch.tensor(rewards, dtype=torch.float64)
    adv = ((r - r.mean()) / (r.std() + 1e-4)).float()

    ids = torch.tensor(inputs)
    tg = torch.tensor(targets)
    mask = tg >= 0
    with torch.no_grad():
        lp0 = torch.log_softmax(model(input_ids=ids).logits, -1).gather(-1, tg.clamp(min=0)[..., None])[..., 0]
    # Reference and old log-probs near the policy's: old ones spread so that ratios leave [1−ε, 1+ε].
    ref = (lp0 + 0.3 * torch.randn(lp0.shape, generator=gen)) * mask
    old = (lp0 + 0.25 * torch.randn(lp0.shape, generator=gen)) * mask

    model.zero_grad()
    lp = torch.log_softmax(model(input_ids=ids).logits, -1).gather(-1, tg.clamp(min=0)[..., None])[..., 0]
    ratio = torch.exp(lp - old)
    A = adv[:, None]
    surrogate = torch.min(ratio * A, torch.clamp(ratio, 1 - eps, 1 + eps) * A)
    kl = torch.exp(ref - lp) - (ref - lp) - 1
    per_token = (surrogate - beta * kl) * mask
    J = ((per_token.sum(1) / mask.sum(1)) .sum()) / G
    (-J).backward()
    save_file(hf_named_grads(model), os.path.join(out, "grads.safetensors"))
    clipped = (((ratio > 1 + eps) & (A > 0)) | ((ratio < 1 - eps) & (A < 0))) & mask
    print(name, "J", round(J.item(), 6), "clipped tokens", int(clipped.sum()), "of", int(mask.sum()))
    assert 0 < int(clipped.sum()) < int(mask.sum())
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"prompt": prompt, "completions": completions, "pad": PAD, "seq_len": T,
                   "inputs": sum(inputs, []), "targets": sum(targets, []), "rewards": rewards,
                   "advantages": adv.tolist(), "ref_logp": ref.flatten().tolist(), "old_logp": old.flatten().tolist(),
                   "logp": (lp0 * mask).flatten().tolist(), "beta": beta, "eps": eps, "J": J.item(),
                   "clipped": int(clipped.sum())}, f)


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, args) in enumerate(CASES.items()):
        build(name, *args, 1700 + i)


if __name__ == "__main__":
    main()
