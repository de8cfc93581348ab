#!/usr/bin/env python3
"""Preference pairs without a download, for `dsv2 rm` (docs/ALIGNMENT.md).

Each pair is a conversation of tools/make_sft_data.py (its generators, from the shared corpus and
from generated tasks with checkable answers, English and Chinese) whose answer is the chosen one,
and a rejected answer that is wrong in a way a program can tell:
  a number changed   when the answer has numbers (a sum, a count, a product, a list): the last
                     number moved by a few, so the wrong answer reads like the right one
  another answer     of a question of the same kind (the same prompt opening): another passage's
                     continuation, another work, another poem's author, another list
  a damaged copy     of the answer: a word (or Chinese character) dropped, two swapped
Writes JSON Lines, one {"prompt": [{"role": "user", ...}], "chosen": "...", "rejected": "..."} per
line (TRL's conversational preference format), or with --format text a raw-text prompt, or with
--pointwise two {"prompt", "completion", "label"} lines per pair (label 1 chosen, 0 rejected).
--held-out takes corpus passages only from the held-out part of each file, as make_sft_data.py does.
Usage: python3 tools/make_rm_data.py --out pairs.jsonl [--count 5000] [--seed 1] [--held-out]
       [--validation-share 0.02] [--corpus DIR] [--kinds corpus,tasks] [--format chat|text] [--pointwise]
"""
import argparse
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sft_data import corpus_item, parse_args, task_item  # noqa: E402

NUMBER = re.compile(r"-?\d+")


def user_and_answer(item):
    messages = item["messages"]
    return messages[0]["content"], messages[1]["content"]


def changed_number(rng, answer):
    """The answer with its last number moved by 1 to 9 (never to itself; a count stays non-negative)."""
    last = list(NUMBER.finditer(answer))[-1]
    old, step = int(last.group()), rng.randint(1, 9)
    value = old - step if rng.random() < 0.5 and (old - step >= 0 or old < 0) else old + step
    return answer[: last.start()] + str(value) + answer[last.end():]


def damaged(rng, answer):
    """A word (Chinese: a character) dropped, or two swapped; None when too short to damage."""
    parts = answer.split(" ") if " " in answer else list(answer)
    joiner = " " if " " in answer else ""
    if len(parts) < 3:
        return None
    parts = list(parts)
    if rng.random() < 0.5:
        del parts[rng.randrange(len(parts))]
    else:
        i = rng.randrange(len(parts) - 1)
        parts[i], parts[i + 1] = parts[i + 1], parts[i]
    out = joiner.join(parts)
    return out if out != answer else None


def another_answer(rng, draw, user, answer):
    """The answer of another question of the same kind (same first 6 characters of the prompt)."""
    for _ in range(200):
        other_user, other = user_and_answer(draw())
        if other_user[:6] == user[:6] and other != answer:
            return other
    return None


def pair(rng, draw):
    while True:
        user, answer = user_and_answer(draw())
        rejected = None
        if NUMBER.search(answer) and rng.random() < 0.8:
            rejected = changed_number(rng, answer)
        elif rng.random() < 0.5:
            rejected = damaged(rng, answer)
        if rejected is None:
            rejected = another_answer(rng, draw, user, answer)
        if rejected is not None and rejected != answer:
            return user, answer, rejected


def rm_options(ap):
    ap.add_argument("--format", choices=["chat", "text"], default="chat",
                    help="prompt as a list of chat messages (default) or as raw text")
    ap.add_argument("--pointwise", action="store_true", help="{prompt, completion, label} lines instead of pairs")


def main():
    args, kinds, files = parse_args(__doc__, 5000, "corpus,tasks", extra=rm_options)
    rng = random.Random(args.seed)

    def draw():
        return corpus_item(rng, files) if rng.choice(kinds) == "corpus" else task_item(rng)

    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(args.count):
            user, chosen, rejected = pair(rng, draw)
            prompt = [{"role": "user", "content": user}] if args.format == "chat" else f"User: {user}\n\nAssistant: "
            if args.pointwise:
                for completion, label in ((chosen, 1), (rejected, 0)):
                    f.write(json.dumps({"prompt": prompt, "completion": completion, "label": label}, ensure_ascii=False) + "\n")
            else:
                f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)  # never a half-written file under the final name
    print(f"{args.count} pairs -> {args.out}")


if __name__ == "__main__":
    main()
