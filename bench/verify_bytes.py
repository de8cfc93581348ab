#!/usr/bin/env python3
"""Bytes of weights a 1-token decoding step and a (1 + draft)-token verification step read, from a
model directory's safetensors header (dsv2 init writes them; issue 19 part 5, docs/PERFORMANCE.md).

Memory-bound decoding costs what it reads. A verification step reads every weight a 1-token step
reads, once for all its tokens, plus the routed experts its other tokens choose and the first did
not: with routes independent and uniform over n experts (random weights route so; trained models
share more between neighbouring tokens), t tokens choosing k each reach n (1 - (1 - k/n)^t)
experts on average. Also for the full depth of a release (--layers), by repeating the last MoE layer.

    python3 bench/verify_bytes.py MODEL_DIR [--draft 1] [--layers 61]
"""
import argparse
import json
import os
import re
import struct


def tensor_bytes(directory):
    sizes = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            with open(os.path.join(directory, name), "rb") as f:
                header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
            for key, value in header.items():
                if key != "__metadata__":
                    sizes[key] = value["data_offsets"][1] - value["data_offsets"][0]
    return sizes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--draft", type=int, default=1)
    parser.add_argument("--layers", type=int, help="main layers of the full model to extrapolate to")
    args = parser.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    n, k, L = config["n_routed_experts"], config["num_experts_per_tok"], config["num_hidden_layers"]
    sizes = tensor_bytes(args.model)
    per_layer = {}  # layer -> [bytes outside routed experts, bytes of one routed expert]
    head = embed_row = 0
    for name, size in sizes.items():
        m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
        if not m:
            if name.startswith("lm_head"):
                head += size
            elif name.startswith("model.embed_tokens"):
                embed_row += size / config["vocab_size"]
            continue
        layer = int(m.group(1))
        if layer >= L:
            continue  # the MTP layer: not part of a main-model step
        entry = per_layer.setdefault(layer, [0, 0])
        expert = re.match(r"mlp\.experts\.(\d+)\.", m.group(2))
        if expert:
            entry[1] += size / n
        else:
            entry[0] += size

    def step_bytes(tokens, layers):
        total = head + embed_row * tokens
        for layer in layers:
            rest, expert = per_layer[layer]
            reached = n * (1 - (1 - k / n) ** tokens) if expert else 0
            total += rest + reached * expert
        return total

    layer_lists = [("this model (%d layers)" % L, list(range(L)))]
    if args.layers:
        layer_lists.append(("at %d layers" % args.layers, list(range(L)) + [L - 1] * (args.layers - L)))
    for label, layers in layer_lists:
        one, verify = step_bytes(1, layers), step_bytes(1 + args.draft, layers)
        print("%-24s 1-token step %.3f GB, %d-token verification %.3f GB: %.3fx"
              % (label, one / 1e9, 1 + args.draft, verify / 1e9, verify / one))


if __name__ == "__main__":
    main()
