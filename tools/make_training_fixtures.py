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
MTP cases (DeepSeek-V3 §2.2; src/train/mtp_train.h) add D multi-token-prediction modules, written
as model.layers.<L+k>.* (enorm, hnorm, eh_proj, the decoder block, shared_head.norm); our own torch
implementation of them on transformers' hidden states (after model.norm) and transformers' decoder
layers as the blocks; the objective is CE + λ/D·Σ_k CE_k, and the gradients and trajectory are of it.
Usage: pip install torch transformers safetensors; python3 tools/make_training_fixtures.py [CASE...]
(no CASE: all of them)
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
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


# name: (config class, fields over COMMON, T, MTP depth D, λ)
MTP_CASES = {
    "v3_mtp": (DeepseekV3Config, dict(q_lora_rank=24, n_shared_experts=1, topk_method="noaux_tc", n_group=2,
                                      topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                                      scoring_func="sigmoid"), 12, 2, 0.3),
}


def hf_named_grads(model, named=None):
    """Gradients under DeepSeek's checkpoint names (fused expert tensors split per expert)."""
    out = {}
    for name, p in (named if named is not None else model.named_parameters()):
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


def init_weights(model):
    """Norms near 1, router weights wider (so routing is decisive), the rest 0.1·N(0, 1)."""
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


def start_case(name, extra, seed, root=ROOT):
    """An empty output directory (root/name), the seeded generator and the case's config fields."""
    out = os.path.join(root, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(seed)
    cfg = dict(COMMON)
    cfg.update(extra)
    return out, cfg


def build(name, cls, extra, T, seed):
    out, cfg = start_case(name, extra, seed)
    model = AutoModelForCausalLM.from_config(cls(**cfg)).float()
    init_weights(model)
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


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def build_mtp(name, cls, extra, T, depth, lam, seed):
    out, cfg = start_case(name, extra, seed)
    L, d, eps = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["rms_norm_eps"]
    # A host model with D more layers: its layers L.. are the MTP blocks (transformers' own decoder layers).
    host = AutoModelForCausalLM.from_config(cls(**dict(cfg, num_hidden_layers=L + depth))).float()
    init_weights(host)
    model = AutoModelForCausalLM.from_config(cls(**cfg)).float()
    missing, unexpected = model.load_state_dict(host.state_dict(), strict=False)
    assert not missing, missing
    blocks = torch.nn.ModuleList(host.model.layers[L:L + depth])
    mtp = torch.nn.ParameterDict()
    for k in range(depth):
        for part in ("enorm", "hnorm", "shared_head_norm"):
            mtp[f"{part}{k}"] = torch.nn.Parameter(1.0 + 0.1 * torch.randn(d))
        mtp[f"eh_proj{k}"] = torch.nn.Parameter(0.1 * torch.randn(d, 2 * d))
    rotary = model.model.rotary_emb
    B_ = B
    batches = torch.randint(0, cfg["vocab_size"], (STEPS, B_, T + 1)).tolist()

    def objective(ids):
        ids = torch.tensor(ids)
        h = model.model(input_ids=ids[:, :T]).last_hidden_state  # after model.norm
        ce = torch.nn.functional.cross_entropy
        main = ce(model.lm_head(h).reshape(-1, cfg["vocab_size"]), ids[:, 1:].reshape(-1))
        prev, losses = h, []
        for k in range(1, depth + 1):
            Tk = T - k
            emb = model.model.embed_tokens(ids[:, k:k + Tk])  # t_{i+k}
            x = torch.cat([rms_norm(emb, mtp[f"enorm{k-1}"], eps), rms_norm(prev[:, :Tk], mtp[f"hnorm{k-1}"], eps)], -1)
            x = x @ mtp[f"eh_proj{k-1}"].T
            positions = torch.arange(Tk)[None].expand(ids.shape[0], -1)
            mask = torch.full((Tk, Tk), float("-inf")).triu(1)[None, None]
            y = blocks[k - 1](x, attention_mask=mask, position_ids=positions,
                              position_embeddings=rotary(x, positions))
            y = y[0] if isinstance(y, tuple) else y
            hk = rms_norm(y, mtp[f"shared_head_norm{k-1}"], eps)
            losses.append(ce(model.lm_head(hk).reshape(-1, cfg["vocab_size"]), ids[:, k + 1:k + 1 + Tk].reshape(-1)))
            prev = hk
        return main, losses, main + lam / depth * sum(losses)

    def named_mtp(grads):
        named = []
        for k in range(depth):
            p = f"model.layers.{L + k}."
            named += [(p + n, q) for n, q in blocks[k].named_parameters()]
            named += [(p + "enorm.weight", mtp[f"enorm{k}"]), (p + "hnorm.weight", mtp[f"hnorm{k}"]),
                      (p + "eh_proj.weight", mtp[f"eh_proj{k}"]),
                      (p + "shared_head.norm.weight", mtp[f"shared_head_norm{k}"])]
        return named

    params = list(model.parameters()) + list(blocks.parameters()) + list(mtp.parameters())
    model.train()
    blocks.train()
    for p in params:
        p.grad = None
    main0, mtp0, obj0 = objective(batches[0])
    obj0.backward()
    grads = hf_named_grads(model)
    grads.update(hf_named_grads(None, named_mtp(None)))
    save_file(grads, os.path.join(out, "grads.safetensors"))

    # The checkpoint: the main model as transformers writes it, plus the MTP layers
    # (the blocks under the names transformers gives the host's layers).
    tmp = tempfile.mkdtemp()
    host.save_pretrained(tmp)
    host_tensors = load_file(os.path.join(tmp, "model.safetensors"))
    model.save_pretrained(out)
    tensors = load_file(os.path.join(out, "model.safetensors"))
    for n, t in host_tensors.items():
        if any(n.startswith(f"model.layers.{L + k}.") for k in range(depth)):
            tensors[n] = t
    for k in range(depth):
        p = f"model.layers.{L + k}."
        tensors[p + "enorm.weight"] = mtp[f"enorm{k}"].detach().clone()
        tensors[p + "hnorm.weight"] = mtp[f"hnorm{k}"].detach().clone()
        tensors[p + "eh_proj.weight"] = mtp[f"eh_proj{k}"].detach().clone()
        tensors[p + "shared_head.norm.weight"] = mtp[f"shared_head_norm{k}"].detach().clone()
    save_file({n: t.contiguous() for n, t in tensors.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    shutil.rmtree(tmp)
    config_path = os.path.join(out, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["num_nextn_predict_layers"] = depth
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)

    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        main, _, obj = objective(batches[step])
        obj.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(main.item())
    with open(os.path.join(out, "batch.json"), "w") as f:
        json.dump({"batch": B_, "seq_len": T, "ids": batches, "loss0": main0.item(), "mtp_depth": depth,
                   "mtp_lambda": lam, "mtp_loss0": sum(x.item() for x in mtp0) / depth}, f)
    with open(os.path.join(out, "trajectory.json"), "w") as f:
        json.dump({"lr": LR, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0, "losses": losses}, f)
    print(name, "loss0", round(main0.item(), 4), "mtp", [round(x.item(), 4) for x in mtp0], "final", round(losses[-1], 4))


def main():
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, (cls, extra, T)) in enumerate(CASES.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            build(name, cls, extra, T, 500 + i)
    for i, (name, (cls, extra, T, depth, lam)) in enumerate(MTP_CASES.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            build_mtp(name, cls, extra, T, depth, lam, 600 + i)


if __name__ == "__main__":
    main()
