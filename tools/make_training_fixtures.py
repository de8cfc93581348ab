#!/usr/bin/env python3
"""Training fixtures from torch autograd on the transformers model.

For tiny configs of each routing / attention variant, writes tests/fixtures/training/<case>/:
  config.json, model.safetensors   the weights (transformers' save_pretrained, fp32)
  batch.json                       ids [B, T+1] of 10 batches
  grads.safetensors                d(mean next-token cross-entropy)/d(every parameter) on batch 0,
                                   named like the weights (experts split per expert)
  trajectory.json                  losses of 10 steps of torch AdamW (betas 0.9/0.95, eps 1e-8,
                                   weight decay 0.1 on matrices only, lr 5e-4 constant,
                                   grad-norm clipping 1.0), one batch per step
Usage: pip install torch transformers safetensors; python3 tools/make_training_fixtures.py [CASE...]
(no CASE: all of them)
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, DeepseekV2Config, DeepseekV3Config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "training")
B, STEPS, LR = 2, 10, 5e-4

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=2, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
              v_head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-6, first_k_dense_replace=1,
              n_routed_experts=8, num_experts_per_tok=2, rope_theta=10000.0, bos_token_id=0, eos_token_id=1)
# name: (config class, fields over COMMON, sequence length T)
CASES = {
    "v2_lite": (DeepseekV2Config, dict(q_lora_rank=None, n_shared_experts=2, topk_method="greedy",
                                       routed_scaling_factor=1.0, norm_topk_prob=False), 12),
    "v2_group_yarn": (DeepseekV2Config, dict(q_lora_rank=24, n_shared_experts=1, topk_method="group_limited_greedy",
                                             n_group=4, topk_group=2, routed_scaling_factor=2.0, norm_topk_prob=False,
                                             rope_scaling={"type": "yarn", "factor": 4.0,
                                                           "original_max_position_embeddings": 16, "beta_fast": 32,
                                                           "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}), 12),
    "v3_noaux": (DeepseekV3Config, dict(q_lora_rank=24, n_shared_experts=1, topk_method="noaux_tc", n_group=2,
                                        topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                                        scoring_func="sigmoid"), 12),
    # Longer than two of dsv2's causal attention blocks (64 positions) plus a partial one.
    "v2_long": (DeepseekV2Config, dict(q_lora_rank=24, n_shared_experts=1, topk_method="greedy",
                                       routed_scaling_factor=1.0, norm_topk_prob=False, max_position_embeddings=256), 150),
    # Longer than two of dsv2's 256-key attention tiles: the online softmax across tiles, and
    # query blocks whose first rows see none of a tile. With YaRN, as long-context training runs.
    "v2_tiles": (DeepseekV2Config, dict(q_lora_rank=24, n_shared_experts=1, topk_method="greedy",
                                        routed_scaling_factor=1.0, norm_topk_prob=False, max_position_embeddings=1024,
                                        rope_scaling={"type": "yarn", "factor": 8.0,
                                                      "original_max_position_embeddings": 128, "beta_fast": 32,
                                                      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}), 600),
}


def hf_named_grads(model):
    """Gradients under DeepSeek's checkpoint names (fused expert tensors split per expert)."""
    out = {}
    for name, p in model.named_parameters():
        grad = p.grad.detach().clone().float()
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            inter = grad.shape[1] // 2
            for e in range(grad.shape[0]):
                out[f"{prefix}{e}.gate_proj.weight"] = grad[e, :inter].contiguous()
                out[f"{prefix}{e}.up_proj.weight"] = grad[e, inter:].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            for e in range(grad.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = grad[e].contiguous()
        else:
            out[name] = grad.contiguous()
    return out


def random_model(config, **kwargs):
    """The model with the fixtures' random weights (from torch's global generator): norms near 1,
    a router sharp enough that top-k choices are not near ties, routing biases for noaux_tc."""
    model = AutoModelForCausalLM.from_config(config, **kwargs).float()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            elif pname.endswith("mlp.gate.weight"):
                p.copy_(0.5 * torch.randn(p.shape))
            else:
                p.copy_(0.1 * torch.randn(p.shape))
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape))
    return model


def selected_cases(cases):
    """(index, name, case) of the cases named on the command line, or of all when none is."""
    return [(i, name, case) for i, (name, case) in enumerate(cases.items()) if len(sys.argv) == 1 or name in sys.argv[1:]]


def build(name, cls, extra, T, seed):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(seed)
    cfg = dict(COMMON)
    cfg.update(extra)
    model = random_model(cls(**cfg))
    model.save_pretrained(out)
    model.train()
    batches = torch.randint(0, cfg["vocab_size"], (STEPS, B, T + 1)).tolist()

    def loss_of(ids):
        ids = torch.tensor(ids)
        return model(input_ids=ids[:, :T], labels=None).logits, ids

    def ce(ids):
        logits, ids = loss_of(ids)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    model.zero_grad()
    loss0 = ce(batches[0])
    loss0.backward()
    save_file(hf_named_grads(model), os.path.join(out, "grads.safetensors"))

    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = ce(batches[step])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    with open(os.path.join(out, "batch.json"), "w") as f:
        json.dump({"batch": B, "seq_len": T, "ids": batches, "loss0": loss0.item()}, f)
    with open(os.path.join(out, "trajectory.json"), "w") as f:
        json.dump({"lr": LR, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0, "losses": losses}, f)
    print(name, "loss0", round(loss0.item(), 4), "final", round(losses[-1], 4))


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, name, (cls, extra, T) in selected_cases(CASES):
        build(name, cls, extra, T, 500 + i)


if __name__ == "__main__":
    main()
