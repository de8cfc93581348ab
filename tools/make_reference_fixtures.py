#!/usr/bin/env python3
"""Builds tiny random DeepSeek-V2/V3 checkpoints and their reference logits.

The reference is Hugging Face transformers (fp32 compute). Each case writes
tests/fixtures/<case>/ with
  config.json, *.safetensors (+ index)   a checkpoint in DeepSeek's layout
  reference.json                         token ids, prefill length, shapes
  prefill_logits.f32                     [T, vocab] from one full forward
  decode_logits.f32                      [T, vocab] from a prefill of P tokens,
                                         then one token per call through HF's cache
For every case except fp8 the expected logits come from transformers loading the
files we wrote (from_pretrained), which also proves transformers reads our layout.
HF cannot load fp8 block-scaled weights on a CPU, so for fp8 the reference model
holds the dequantized weights w = fp8 * scale_inv (DeepSeek's weight_dequant).

Usage: pip install torch transformers safetensors; python3 tools/make_reference_fixtures.py
"""
import json
import math
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
TOKENS = 11
PREFILL = 4
GREEDY_TOKENS = 8

COMMON = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
    v_head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1,
    first_k_dense_replace=1, moe_layer_freq=1, hidden_act="silu", attention_bias=False, rope_theta=10000.0)

YARN_V2 = {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 16, "beta_fast": 32, "beta_slow": 1,
           "mscale": 0.707, "mscale_all_dim": 0.707}
YARN_V3 = {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 16, "beta_fast": 32, "beta_slow": 1,
           "mscale": 1.0, "mscale_all_dim": 1.0}

CASES = {
    # V2-Lite: no query compression, softmax scores, greedy top-k, no renormalisation, factor 1.
    # It also carries a 512-token DeepSeek-V2-rules tokenizer, so text prompts can be tested.
    "v2_lite": dict(model_type="deepseek_v2", dtype="f32", tokenizer=512, config=dict(
        vocab_size=512, q_lora_rank=None, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3, topk_method="greedy",
        scoring_func="softmax", norm_topk_prob=False, routed_scaling_factor=1.0, n_group=1, topk_group=1)),
    # V2: query compression, device-limited (group) routing, routed_scaling_factor 16, V2's YaRN, bf16 weights.
    "v2_yarn_bf16": dict(model_type="deepseek_v2", dtype="bf16", config=dict(
        q_lora_rank=48, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3,
        topk_method="group_limited_greedy", n_group=4, topk_group=2, scoring_func="softmax", norm_topk_prob=False,
        routed_scaling_factor=16.0, rope_scaling=YARN_V2)),
    # V3: sigmoid + noaux_tc with a non-zero correction bias, renormalised weights x 2.5, V3's YaRN,
    # float8 e4m3 weights with block scales (16x16 here so that tiny matrices have several and partial blocks),
    # plus an MTP layer that plain inference must ignore.
    "v3_fp8_yarn": dict(model_type="deepseek_v3", dtype="fp8", mtp=True, config=dict(
        q_lora_rank=48, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, topk_method="noaux_tc",
        n_group=4, topk_group=2, scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5,
        num_nextn_predict_layers=1, rope_scaling=YARN_V3,
        quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                             "weight_block_size": [16, 16]})),
    # V3 without YaRN, f16 weights (float32 correction bias beside them), sharded over three files
    # with an index, tied embeddings, MTP layer, and the config.json exactly as transformers 5
    # writes it (rope_parameters instead of rope_scaling).
    "v3_sharded": dict(model_type="deepseek_v3", dtype="f16", mtp=True, shards=3, hf_config=True, config=dict(
        q_lora_rank=48, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, topk_method="noaux_tc",
        n_group=2, topk_group=1, scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5,
        num_nextn_predict_layers=1, tie_word_embeddings=True)),
}


def init_weights(model, generator):
    """Large enough random weights that routing and attention patterns are far from ties."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=generator))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                # Strongly negative biases make kept experts score below 0 on the biased scale, so
                # masking the other groups with 0 instead of -inf (a past transformers bug) would differ.
                b.copy_(1.0 * torch.randn(b.shape, generator=generator) - 0.8)


def fp8_quantize(w, block):
    """DeepSeek's block-wise e4m3 quantisation: per block scale = amax / 448."""
    rows, cols = w.shape
    br, bc = block
    srows, scols = math.ceil(rows / br), math.ceil(cols / bc)
    scale = torch.zeros(srows, scols, dtype=torch.float32)
    q = torch.zeros(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(srows):
        for j in range(scols):
            blk = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc].float()
            s = max(blk.abs().max().item(), 1e-12) / 448.0
            scale[i, j] = s
            q[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = (blk / s).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale, block):
    br, bc = block
    full = scale.repeat_interleave(br, 0)[:q.shape[0]].repeat_interleave(bc, 1)[:, :q.shape[1]]
    return q.float() * full


def is_fp8_target(name, tensor):
    # As in DeepSeek-V3's release: every linear weight inside a layer is fp8 except the router.
    return (tensor.dim() == 2 and name.startswith("model.layers.") and name.endswith("proj.weight"))


def mtp_tensors(cfg, generator):
    """Weights of a depth-1 multi-token-prediction layer, named as in DeepSeek-V3's release."""
    L, d = cfg["num_hidden_layers"], cfg["hidden_size"]
    p = f"model.layers.{L}."
    shapes = {"enorm.weight": (d,), "hnorm.weight": (d,), "eh_proj.weight": (d, 2 * d),
              "input_layernorm.weight": (d,), "self_attn.kv_a_proj_with_mqa.weight": (40, d),
              "mlp.gate.weight": (8, d), "shared_head.norm.weight": (d,),
              "shared_head.head.weight": (cfg["vocab_size"], d), "embed_tokens.weight": (cfg["vocab_size"], d)}
    return {p + k: torch.randn(s, generator=generator) for k, s in shapes.items()}


def write_shards(out_dir, tensors, shards):
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        return
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        save_file(part, os.path.join(out_dir, fname), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def deepseek_config_json(model_type, cfg):
    """config.json in the form DeepSeek publishes (rope_scaling, rope_theta at top level)."""
    out = {"architectures": ["DeepseekV3ForCausalLM" if model_type == "deepseek_v3" else "DeepseekV2ForCausalLM"],
           "model_type": model_type, "torch_dtype": "bfloat16"}
    out.update(cfg)
    out.setdefault("rope_scaling", None)
    out.setdefault("tie_word_embeddings", False)
    return out


def reference_logits(model, ids):
    with torch.no_grad():
        prefill = model(torch.tensor([ids])).logits[0].float()
        out = model(torch.tensor([ids[:PREFILL]]), use_cache=True)
        rows, cache = [out.logits[0]], out.past_key_values
        for t in range(PREFILL, len(ids)):
            out = model(torch.tensor([[ids[t]]]), past_key_values=cache, use_cache=True)
            rows.append(out.logits[0])
            cache = out.past_key_values
        decode = torch.cat(rows, 0).float()
    return prefill, decode


def greedy_continuation(model, ids, n):
    """argmax decoding through HF's cache, ignoring end-of-sequence."""
    out_ids = []
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
        for _ in range(n):
            nxt = int(out.logits[0, -1].argmax())
            out_ids.append(nxt)
            out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
    return out_ids


def build_case(name, case, seed):
    out_dir = os.path.join(ROOT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    cfg = dict(COMMON)
    cfg.update(case["config"])
    generator = torch.Generator().manual_seed(seed)

    # 1. The HF model with random weights (config built through from_pretrained of the
    #    DeepSeek-style config.json, so HF reads the same fields dsv2 reads).
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(deepseek_config_json(case["model_type"], cfg), f, indent=2)
    hf_cls = DeepseekV3ForCausalLM if case["model_type"] == "deepseek_v3" else DeepseekV2ForCausalLM
    cfg_cls = DeepseekV3Config if case["model_type"] == "deepseek_v3" else DeepseekV2Config
    hf_config = cfg_cls.from_pretrained(tmp)
    hf_config.quantization_config = None
    if hasattr(hf_config, "quantization_config"):
        del hf_config.quantization_config
    model = hf_cls(hf_config).float().eval()
    init_weights(model, generator)

    # 2. Tensors in DeepSeek's layout (transformers writes per-expert names), stored in the case's dtype.
    model.save_pretrained(tmp)
    tensors = load_file(os.path.join(tmp, "model.safetensors"))
    stored = {}
    block = tuple(cfg.get("quantization_config", {}).get("weight_block_size", [128, 128]))
    for n, t in tensors.items():
        if case["dtype"] == "fp8" and is_fp8_target(n, t):
            q, s = fp8_quantize(t, block)
            stored[n], stored[n + "_scale_inv"] = q, s
            tensors[n] = fp8_dequantize(q, s, block)
        elif case["dtype"] in ("bf16", "fp8", "f16") and not n.endswith("e_score_correction_bias"):
            stored[n] = t.to(torch.float16 if case["dtype"] == "f16" else torch.bfloat16)
            tensors[n] = stored[n].float()
        else:
            stored[n] = t.float().contiguous()
    if case.get("mtp"):
        stored.update(mtp_tensors(cfg, generator))
    write_shards(out_dir, stored, case.get("shards", 1))
    if case.get("hf_config"):
        shutil.copy(os.path.join(tmp, "config.json"), os.path.join(out_dir, "config.json"))
    else:
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(deepseek_config_json(case["model_type"], cfg), f, indent=2)

    if case.get("tokenizer"):
        import make_tokenizer_fixtures as mtf
        tok = mtf.train(mtf.ds.DEEPSEEK_V2, case["tokenizer"], mtf.TRAINER_FILES)
        mtf.save_to(tok, out_dir, merges_as_strings=True)

    # 3. The reference model: transformers loading our files, or (fp8) the dequantized weights.
    if case["dtype"] == "fp8":
        save_file(tensors, os.path.join(tmp, "model.safetensors"))
        reference = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    else:
        reference = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    shutil.rmtree(tmp)

    ids = torch.randint(2, cfg["vocab_size"], (TOKENS,), generator=generator).tolist()
    prefill, decode = reference_logits(reference, ids)
    greedy = greedy_continuation(reference, ids, GREEDY_TOKENS)
    gap = (prefill - decode).abs().max().item()
    assert gap <= 1e-4 * prefill.abs().max().item(), f"{name}: HF prefill and cached decode differ by {gap}"
    prefill.numpy().astype("<f4").tofile(os.path.join(out_dir, "prefill_logits.f32"))
    decode.numpy().astype("<f4").tofile(os.path.join(out_dir, "decode_logits.f32"))
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"ids": ids, "prefill": PREFILL, "greedy": greedy, "vocab_size": cfg["vocab_size"],
                   "max_abs_logit": prefill.abs().max().item(),
                   "made_by": "tools/make_reference_fixtures.py", "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__}, f, indent=2)
    print(f"{name}: {len(stored)} tensors, max |logit| {prefill.abs().max().item():.3f}")


def fp8_table():
    """All 256 float8_e4m3fn codes decoded by torch, for the dtype conversion test."""
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
    codes.float().numpy().astype("<f4").tofile(os.path.join(ROOT, "fp8_e4m3_values.f32"))


def main():
    torch.manual_seed(0)
    os.makedirs(ROOT, exist_ok=True)
    names = sys.argv[1:] or list(CASES)
    for i, name in enumerate(CASES):
        if name in names:
            build_case(name, CASES[name], seed=1000 + i)
    fp8_table()


if __name__ == "__main__":
    main()
