#!/usr/bin/env python3
"""Builds dsv2's local evaluation tasks from the shared corpus (deterministic):

  bench/eval/next_sentence_en.jsonl  multiple choice: an English passage and four
                                      candidate next sentences, the true one and
                                      three from other passages
  bench/eval/next_line_zh.jsonl      multiple choice: a Chinese poem's title and
                                      first lines, and four candidate next lines
                                      (the others from other poems, same length)
  bench/eval/next_word_en.jsonl      generation: the first 50 English passages and
                                      the first word of the true next sentence

Items come only from the last 2% of each corpus file: the validation split that
`dsv2 train --validation-share 0.02` holds out, which dsv2-mini never trained on.
Multiple-choice lines are {"context", "choices", "answer", "source"}; context +
choices[answer] is the text as it continues (each choice carries its own
leading space, so the harness's target_delimiter is "").

    python3 tools/make_eval_tasks.py [--corpus ../shared/data/corpus] [--out bench/eval] [--items 200]
"""
import argparse
import json
import os
import random
import re

EN_FILES = ["alice_in_wonderland", "dracula", "frankenstein", "great_expectations", "moby_dick",
            "pride_and_prejudice", "shakespeare", "sherlock_holmes", "tale_of_two_cities", "tom_sawyer"]
ZH_FILES = ["ci", "shijing", "tang"]
ABBREVIATIONS = {"Mr", "Mrs", "Dr", "St", "Mme", "Messrs", "Esq", "Capt", "Col", "Gen", "Sq", "Mt", "No"}


def held_out(path, share=0.02):
    """The text after `dsv2 train`'s validation cut (src/train/data.cpp validation_cut): at the first newline at or
    after (1 - share) of the bytes."""
    data = open(path, "rb").read()
    newline = data.find(b"\n", int(len(data) * (1.0 - share)))
    return data[newline + 1:].decode("utf-8") if newline >= 0 else ""


def english_sentences(paragraph):
    """Sentences of a whitespace-normalised paragraph: split after . ! ? (and closing quotes) before a capital."""
    text = " ".join(paragraph.split())
    sentences, start = [], 0
    for m in re.finditer(r"[.!?][\"')_]*\s+(?=[\"'(_]*[A-Z])", text):
        word = re.search(r"(\w+)[.!?]", text[max(start, m.start() - 12):m.end()])
        if word and word.group(1) in ABBREVIATIONS:
            continue
        sentences.append(text[start:m.end()].strip())
        start = m.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def english_items(corpus, rng, count):
    passages = []  # (source, sentences)
    for name in EN_FILES:
        for paragraph in re.split(r"\n\s*\n", held_out(os.path.join(corpus, "en", name + ".txt"))):
            sentences = english_sentences(paragraph)
            if len(sentences) >= 2:
                passages.append(("en/" + name + ".txt", sentences))
    pool = [(i, s) for i, (_, sentences) in enumerate(passages) for s in sentences if 20 <= len(s) <= 200]
    items = []
    for i in rng.sample(range(len(passages)), len(passages)):
        source, sentences = passages[i]
        # Up to two items per passage (different places in it).
        for k in rng.sample(range(1, len(sentences)), min(2, len(sentences) - 1)):
            context, truth = " ".join(sentences[max(0, k - 4):k]), sentences[k]
            if len(context) < 40 or not 20 <= len(truth) <= 200:
                continue
            # Three of the twelve other sentences nearest in length, from the same book when it has them: a
            # length or another book's style (a play's speaker names) must not give the answer away.
            others = [(j, s) for j, s in pool if j != i and s != truth]
            same_book = [(j, s) for j, s in others if passages[j][0] == source]
            candidates = same_book if len(same_book) >= 12 else others
            nearest = sorted(candidates, key=lambda js: (abs(len(js[1]) - len(truth)), js))
            distractors = [s for _, s in rng.sample(nearest[:12], 3)]
            items.append(make_item(context, [" " + truth] + [" " + s for s in distractors], source, rng))
            if len(items) == count:
                return items
    return items


def chinese_items(corpus, rng, count):
    poems = []  # (source, title, lines)
    for name in ZH_FILES:
        for block in re.split(r"\n\s*\n", held_out(os.path.join(corpus, "zh", name + ".txt"))):
            rows = [r for r in block.strip().split("\n") if r]
            if len(rows) < 2 or " · " not in rows[0]:
                continue
            lines = re.findall(r"[^。！？；]+[。！？；]", "".join(rows[1:]))
            if len(lines) >= 2:
                poems.append(("zh/" + name + ".txt", rows[0], lines))
    by_length = {}  # (source, length) -> lines: the same collection, for its script (traditional or simplified)
    for i, (source, _, lines) in enumerate(poems):
        for line in lines:
            by_length.setdefault((source, len(line)), []).append((i, line))
    items = []
    for i in rng.sample(range(len(poems)), len(poems)):
        source, title, lines = poems[i]
        k = rng.randrange(1, len(lines))
        truth = lines[k]
        # Other poems' lines of the same length, so that length tells nothing.
        others = sorted({line for j, line in by_length[(source, len(truth))] if j != i and line != truth})
        if len(others) < 3:
            continue
        items.append(make_item(title + "\n" + "".join(lines[:k]), [truth] + rng.sample(others, 3), source, rng))
        if len(items) == count:
            break
    return items


def make_item(context, choices, source, rng):
    """choices[0] is the true one; it goes to a random place."""
    answer = rng.randrange(len(choices))
    choices[0], choices[answer] = choices[answer], choices[0]
    return {"context": context, "choices": choices, "answer": answer, "source": source}


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{path}: {len(items)} items, {os.path.getsize(path)} bytes")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(root, "..", "shared", "data", "corpus"))
    parser.add_argument("--out", default=os.path.join(root, "bench", "eval"))
    parser.add_argument("--items", type=int, default=200, help="items per multiple-choice task (default 200)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    english = english_items(args.corpus, random.Random(21), args.items)
    write_jsonl(os.path.join(args.out, "next_sentence_en.jsonl"), english)
    write_jsonl(os.path.join(args.out, "next_line_zh.jsonl"), chinese_items(args.corpus, random.Random(22), args.items))
    words = [{"context": item["context"], "target": re.match(r"\W*([\w']+)", item["choices"][item["answer"]]).group(1),
              "source": item["source"]} for item in english[:50]]
    write_jsonl(os.path.join(args.out, "next_word_en.jsonl"), words)


if __name__ == "__main__":
    main()
