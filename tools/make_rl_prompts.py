#!/usr/bin/env python3
"""Verifiable RL prompts without a download, for `dsv2 grpo` (docs/ALIGNMENT.md).

Writes JSON Lines, one {"messages": [{"role": "user", "content": ...}], "answer": ..., "kind": ...} per line
(kind: add, sub, mul, count, copy, reverse, json, upper, source, author, next_line), in
English and Chinese, from the same generators as tools/make_sft_data.py (imported, not copied):
  tasks    arithmetic, counting letters or characters, copying, reversing a list, JSON, upper case:
           the answer is what a program computes (numbers as JSON numbers)
  corpus   from the shared corpus, read in place: which work a passage is from (the title), who
           wrote a Tang poem or Song ci (the author), the line after a given one (the line).
           Open-ended continuations are left out: no program can check them.
Each question asks for a last line "Answer: X" (“答案：X”), which `--reward exact-answer` reads and
`--reward format` rewards. Passages come from the training part of each corpus file, or with
--held-out only from the held-out part (as make_sft_data.py), so an evaluation set never overlaps.
Usage: python3 tools/make_rl_prompts.py --out rl.jsonl [--count 5000] [--seed 1] [--kinds tasks,corpus]
       [--held-out] [--validation-share 0.02] [--corpus DIR]
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sft_data import OPEN_ENDED, ask_for_answer_line, corpus_task, parse_args, task  # noqa: E402


def prompt_line(question, answer, kind):
    return {"messages": [{"role": "user", "content": ask_for_answer_line(question)}], "answer": answer, "kind": kind}


def main():
    args, kinds, files = parse_args(__doc__, 5000, "tasks,corpus")
    rng = random.Random(args.seed)
    tmp = args.out + ".tmp"
    written = 0
    with open(tmp, "w", encoding="utf-8") as f:
        while written < args.count:
            kind = rng.choice(kinds)
            question, _, answer, task_kind = corpus_task(rng, files) if kind == "corpus" else task(rng)
            if task_kind in OPEN_ENDED:
                continue
            f.write(json.dumps(prompt_line(question, answer, task_kind), ensure_ascii=False) + "\n")
            written += 1
    os.replace(tmp, args.out)  # never a half-written file under the final name
    print(f"{written} prompts -> {args.out}")


if __name__ == "__main__":
    main()
