#!/usr/bin/env python3
"""Hugging Face `tokenizers` side of bench/tokenizer.sh (one thread)."""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer, pre_tokenizers, trainers  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def main():
    mode, arg, files = sys.argv[1], sys.argv[2], [f for f in sys.argv[3:] if not f.startswith("--")]
    text = "".join(open(f, encoding="utf-8").read() for f in files)
    if mode == "encode-lines":
        lines = text.splitlines(keepends=True)
        times, n = [], 0
        for _ in range(5):
            tok = Tokenizer.from_file(arg + "/tokenizer.json")
            t = time.perf_counter()
            n = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
            times.append(time.perf_counter() - t)
        t = sorted(times)[len(times) // 2]
        size = len(text.encode("utf-8"))
        print(json.dumps({"impl": "hf", "mode": "encode-lines", "bytes": size, "tokens": n, "median_s": round(t, 4),
                          "mb_per_s": round(size / 1e6 / t, 2)}))
    elif mode == "encode":
        times, n = [], 0
        for _ in range(5):
            tok = Tokenizer.from_file(arg + "/tokenizer.json")
            t = time.perf_counter()
            n = len(tok.encode(text, add_special_tokens=False).ids)
            times.append(time.perf_counter() - t)
        t = sorted(times)[len(times) // 2]
        size = len(text.encode("utf-8"))
        print(json.dumps({"impl": "hf", "mode": "encode", "bytes": size, "tokens": n, "median_s": round(t, 4),
                          "mb_per_s": round(size / 1e6 / t, 2)}))
    else:
        import deepseek_pretokenizers as ds
        t = time.perf_counter()
        tok = Tokenizer.from_str(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []},
                                             "pre_tokenizer": ds.DEEPSEEK_V2}))
        trainer = trainers.BpeTrainer(vocab_size=int(arg), min_frequency=2, show_progress=False,
                                      special_tokens=ds.SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train(files, trainer)
        print(json.dumps({"impl": "hf", "mode": "train", "bytes": len(text.encode("utf-8")),
                          "vocab": tok.get_vocab_size(), "seconds": round(time.perf_counter() - t, 2)}))


if __name__ == "__main__":
    main()
