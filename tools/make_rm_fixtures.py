#!/usr/bin/env python3
"""Reward-model gradient fixtures from torch autograd on the transformers model.

A reward model is the causal LM's body plus score.weight [1, hidden] read at the last token's final
hidden state (after model.norm), as transformers' DeepseekV2ForSequenceClassification computes it.
For each case, writes tests/fixtures/rm/<case>/:
  config.json, model.safetensors   the weights: the causal LM's (lm_head kept, as dsv2 rm writes it)
                                   plus score.weight; config architectures
                                   ["DeepseekV2ForSequenceClassification"], num_labels 1
  examples.json                    pairwise, and per example its token sequences (chosen / rejected,
                                   or completion and label), the scores r, loss0
  grads.safetensors                d loss / d(every parameter but lm_head, which the loss never reads),
                                   score.weight included, named like the weights (experts split)
Loss: pair-wise mean over pairs of -log sigmoid(r_chosen - r_rejected); point-wise mean of the binary
cross-entropy of sigmoid(r) against the label. Every sequence runs through the model alone. The script
also checks that transformers' DeepseekV2ForSequenceClassification, loading the written directory,
gives the same scores.
Usage: /work/venv-ref/bin/python tools/make_rm_fixtures.py (needs torch, transformers, safetensors)
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, DeepseekV2Config, DeepseekV2ForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_training_fixtures import COMMON, hf_named_grads, init_weights, start_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "rm")

# name: (fields over COMMON, pair-wise?, per example: (prompt, answer lengths) and for point-wise the label)
CASES = {
    "pairs": (dict(q_lora_rank=None, n_shared_experts=2, topk_method="greedy", routed_scaling_factor=1.0,
                   norm_topk_prob=False), True, [(5, 2, 7), (9, 6, 1), (3, 6, 6)]),
    "pointwise": (dict(q_lora_rank=24, n_shared_experts=1, topk_method="group_limited_greedy", n_group=4,
                       topk_group=2, routed_scaling_factor=2.0, norm_topk_prob=False,
                       rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                                     "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}),
                  False, [(6, 5, 1), (4, 9, 0), (11, 2, 1), (2, 3, 0)]),
}


def build(name, extra, pairwise, shapes, seed):
    out, cfg = start_case(name, extra, seed, ROOT)
    gen = torch.Generator().manual_seed(seed)
    model = AutoModelForCausalLM.from_config(DeepseekV2Config(**cfg)).float()
    init_weights(model)
    score = torch.nn.Parameter(0.3 * torch.randn(1, cfg["hidden_size"], generator=gen))
    model.save_pretrained(out)
    model.train()

    def ids(n):
        return torch.randint(4, cfg["vocab_size"], (n,), generator=gen).tolist()

    def r(seq):
        h = model.model(input_ids=torch.tensor([seq])).last_hidden_state[0, -1]
        return (score[0] * h).sum()

    examples, terms, rs = [], [], []
    for shape in shapes:
        prompt = ids(shape[0])
        if pairwise:
            chosen, rejected = prompt + ids(shape[1]), prompt + ids(shape[2])
            rc, rr = r(chosen), r(rejected)
            terms.append(-F.logsigmoid(rc - rr))
            rs.append([rc.item(), rr.item()])
            examples.append({"chosen": chosen, "rejected": rejected})
        else:
            completion, label = prompt + ids(shape[1]), shape[2]
            x = r(completion)
            terms.append(F.binary_cross_entropy_with_logits(x, torch.tensor(float(label))))
            rs.append([x.item()])
            examples.append({"completion": completion, "label": label})
    loss0 = torch.stack(terms).mean()
    model.zero_grad()
    loss0.backward()
    named = [(n, p) for n, p in model.named_parameters() if n != "lm_head.weight"]
    grads = hf_named_grads(model, named)
    grads["score.weight"] = score.grad.detach().clone()
    save_file(grads, os.path.join(out, "grads.safetensors"))

    # The reward model directory: the causal LM's tensors plus score.weight, a sequence-classification config.
    weights = load_file(os.path.join(out, "model.safetensors"))
    weights["score.weight"] = score.detach().clone()
    save_file(weights, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    config["architectures"] = ["DeepseekV2ForSequenceClassification"]
    config["num_labels"] = 1
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    # transformers' own class reads the directory and scores the same (lm_head: an unused weight).
    classifier = DeepseekV2ForSequenceClassification.from_pretrained(out).float().eval()
    with torch.no_grad():
        for e, want in zip(examples, rs):
            seqs = [e["chosen"], e["rejected"]] if pairwise else [e["completion"]]
            for seq, w in zip(seqs, want):
                got = classifier(input_ids=torch.tensor([seq])).logits[0, 0].item()
                assert abs(got - w) < 1e-5, (name, got, w)
    for e, want in zip(examples, rs):
        e["scores"] = want
    with open(os.path.join(out, "examples.json"), "w") as f:
        json.dump({"pairwise": pairwise, "examples": examples, "loss0": loss0.item()}, f)
    print(name, "loss0", round(loss0.item(), 6), "scores", [[round(x, 4) for x in w] for w in rs])


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, (extra, pairwise, shapes)) in enumerate(CASES.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            build(name, extra, pairwise, shapes, 1300 + i)


if __name__ == "__main__":
    main()
