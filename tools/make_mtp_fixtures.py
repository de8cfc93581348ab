#!/usr/bin/env python3
"""Builds a tiny DeepSeek-V3-layout checkpoint with a complete MTP layer and the
logits its multi-token-prediction module must give.

transformers drops the MTP layer (model.layers.<num_hidden_layers>.*) at load,
so the reference here is our own torch implementation of the module, placed on
top of transformers' main-model hidden states:

  h_i    = the main model's last hidden state at position i, AFTER model.norm
           (what feeds lm_head; vLLM's and SGLang's MTP take this one)
  x_i    = eh_proj([enorm(Emb(t_{i+1})) ; hnorm(h_i)])      embedding FIRST, as the
           released weights expect (vLLM, SGLang, Megatron all concatenate this way)
  y_i    = DecoderLayer(x_i) at position i, causal over the MTP rows 0..i
           (transformers' own V3 decoder layer with the MTP block's weights)
  logits = shared_head.head(shared_head.norm(y_i))           predicts t_{i+2}

Writes tests/fixtures/v3_mtp/:
  config.json, model.safetensors   (bf16; the MTP layer's own embed_tokens and
                                    shared_head.head differ from the main ones, so
                                    a loader that took the wrong tensor fails)
  mtp_reference.json               token ids, shapes, versions
  mtp_logits.f32                   [T, vocab]: row i from (h_i, t_{i+1})

Usage: /work/venv-ref/bin/python tools/make_mtp_fixtures.py
"""
import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM

import make_reference_fixtures as ref

OUT = os.path.join(ref.ROOT, "v3_mtp")
LAYERS = 2  # main model: layer 0 dense, layer 1 MoE; the MTP block (layer 2) is MoE too
TOKENS = 12
CONFIG = dict(ref.COMMON, num_hidden_layers=LAYERS, q_lora_rank=48, n_routed_experts=8, n_shared_experts=1,
              num_experts_per_tok=3, topk_method="noaux_tc", n_group=4, topk_group=2, scoring_func="sigmoid",
              norm_topk_prob=True, routed_scaling_factor=2.5, num_nextn_predict_layers=1)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def mtp_logits(block, rotary, w, hidden, next_ids, eps):
    """The MTP module over rows i = 0..T-1: hidden [T, d] (after model.norm), next_ids [T]."""
    p = f"model.layers.{LAYERS}."
    emb = w[p + "embed_tokens.weight"][next_ids]
    x = torch.cat([rms_norm(emb, w[p + "enorm.weight"], eps), rms_norm(hidden, w[p + "hnorm.weight"], eps)], -1)
    x = (x @ w[p + "eh_proj.weight"].T)[None]
    rows = x.shape[1]
    positions = torch.arange(rows)[None]
    mask = torch.full((rows, rows), float("-inf")).triu(1)[None, None]
    y = block(x, attention_mask=mask, position_ids=positions, position_embeddings=rotary(x, positions))[0]  # (batch 0)
    return rms_norm(y, w[p + "shared_head.norm.weight"], eps) @ w[p + "shared_head.head.weight"].T


def main():
    generator = torch.Generator().manual_seed(4242)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tmp = tempfile.mkdtemp()

    # 1. A model with one layer more than the main model: its last decoder layer
    #    becomes the MTP block, saved by transformers under model.layers.<LAYERS>.*
    host_cfg = dict(CONFIG, num_hidden_layers=LAYERS + 1)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(ref.deepseek_config_json("deepseek_v3", host_cfg), f, indent=2)
    host = DeepseekV3ForCausalLM(DeepseekV3Config.from_pretrained(tmp)).float().eval()
    ref.init_weights(host, generator)
    host.save_pretrained(tmp)
    tensors = load_file(os.path.join(tmp, "model.safetensors"))

    # 2. The MTP module's own tensors, named as in DeepSeek-V3's release.
    d, vocab, p = CONFIG["hidden_size"], CONFIG["vocab_size"], f"model.layers.{LAYERS}."
    for name in ("enorm.weight", "hnorm.weight", "shared_head.norm.weight"):
        tensors[p + name] = 1.0 + 0.2 * torch.randn(d, generator=generator)
    tensors[p + "eh_proj.weight"] = 0.15 * torch.randn(d, 2 * d, generator=generator)
    tensors[p + "embed_tokens.weight"] = 0.15 * torch.randn(vocab, d, generator=generator)
    tensors[p + "shared_head.head.weight"] = 0.15 * torch.randn(vocab, d, generator=generator)

    # bf16 as DeepSeek ships, float32 noaux_tc bias; the reference computes in fp32 with the rounded values.
    stored = {n: (t.float() if n.endswith("e_score_correction_bias") else t.to(torch.bfloat16)).contiguous()
              for n, t in tensors.items()}
    save_file(stored, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(ref.deepseek_config_json("deepseek_v3", CONFIG), f, indent=2)
    rounded = {n: t.float() for n, t in stored.items()}

    # 3. Main-model hidden states from transformers loading the very files we ship
    #    (it ignores the MTP layer), and the MTP block as transformers' decoder layer.
    main_model = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32).eval()
    save_file(stored, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    host = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
    shutil.rmtree(tmp)

    ids = torch.randint(2, vocab, (TOKENS + 1,), generator=generator).tolist()
    with torch.no_grad():
        out = main_model(torch.tensor([ids]), output_hidden_states=True)
        hidden = main_model.model(torch.tensor([ids])).last_hidden_state[0]  # after model.norm
        assert torch.allclose(main_model.lm_head(hidden), out.logits[0], atol=1e-5)
        logits = mtp_logits(host.model.layers[LAYERS], host.model.rotary_emb, rounded, hidden[:TOKENS],
                            torch.tensor(ids[1:]), CONFIG["rms_norm_eps"])
    logits.numpy().astype("<f4").tofile(os.path.join(OUT, "mtp_logits.f32"))
    with open(os.path.join(OUT, "mtp_reference.json"), "w") as f:
        json.dump({"ids": ids, "rows": TOKENS, "vocab_size": vocab, "max_abs_logit": logits.abs().max().item(),
                   "made_by": "tools/make_mtp_fixtures.py", "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__}, f, indent=2)
    print(f"v3_mtp: {len(stored)} tensors, max |MTP logit| {logits.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
