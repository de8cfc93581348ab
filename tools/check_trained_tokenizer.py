#!/usr/bin/env python3
"""Checks a tokenizer written by `dsv2 tokenizer train` against Hugging Face:
transformers/tokenizers must load it and encode every line of the given text
files exactly as `dsv2 tokenize` does (and decode back to the same text).

Usage: python3 tools/check_trained_tokenizer.py DIR DSV2_BINARY FILE... [--lines N]
"""
import argparse
import json
import subprocess
import sys

from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("dsv2")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--lines", type=int, default=300)
    a = ap.parse_args()
    hf = Tokenizer.from_file(a.dir + "/tokenizer.json")
    lines = []
    for f in a.files:
        with open(f, encoding="utf-8") as fh:
            lines += [l for l in fh.read().split("\n") if l.strip()][: a.lines]
    text = "\n".join(lines)
    want = hf.encode(text).ids
    got = subprocess.run([a.dsv2, "tokenize", "--tokenizer", a.dir, "--file", "-"], input=text.encode(),
                         capture_output=True, check=True).stdout.decode().split()
    got = [int(x) for x in got]
    ok = want == got and hf.decode(want, skip_special_tokens=True) == text
    print(f"{len(want)} tokens over {len(lines)} lines: {'identical' if ok else 'DIFFERENT'}")
    try:
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained(a.dir)
        ok = ok and t.encode(text) == want
        print("transformers AutoTokenizer:", "identical" if t.encode(text) == want else "DIFFERENT")
    except ImportError:
        pass
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
