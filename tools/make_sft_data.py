#!/usr/bin/env python3
"""SFT conversations without a download, for `dsv2 sft` (docs/ALIGNMENT.md).

Writes JSON Lines, one {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line,
in English and Chinese, from two sources:
  corpus   the shared corpus (../shared/data/corpus): continue a passage or a verse, name the work a
           passage comes from (the answer is the file's work), recite the line after a given one
  tasks    generated tasks whose answers a program checks: arithmetic, counting letters or
           characters, copying, reversing a list, simple formats (JSON, upper case)
Passages come from the part of each file `dsv2 train --validation-share X` trains on, or with
--held-out only from the part it holds out (the last X of each file's bytes, cut at a line end,
as src/train/data.cpp's validation_cut), so an evaluation set never overlaps the training text.
--answer-line X makes that share of the checkable conversations ask for a last line "Answer: X" (as
tools/make_rl_prompts.py's prompts do) and end their reply with it.
Usage: python3 tools/make_sft_data.py --out sft.jsonl [--count 20000] [--seed 1] [--held-out]
       [--validation-share 0.02] [--corpus DIR] [--kinds corpus,tasks] [--answer-line X]
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "..", "..", "shared", "data", "corpus")

WORKS = {  # file -> (English title, Chinese title)
    "alice_in_wonderland.txt": ("Alice's Adventures in Wonderland", "《爱丽丝梦游仙境》"),
    "dracula.txt": ("Dracula", "《德古拉》"),
    "frankenstein.txt": ("Frankenstein", "《弗兰肯斯坦》"),
    "great_expectations.txt": ("Great Expectations", "《远大前程》"),
    "moby_dick.txt": ("Moby-Dick", "《白鲸》"),
    "pride_and_prejudice.txt": ("Pride and Prejudice", "《傲慢与偏见》"),
    "shakespeare.txt": ("Shakespeare's plays", "莎士比亚的戏剧"),
    "sherlock_holmes.txt": ("The Adventures of Sherlock Holmes", "《福尔摩斯探案集》"),
    "tale_of_two_cities.txt": ("A Tale of Two Cities", "《双城记》"),
    "tom_sawyer.txt": ("The Adventures of Tom Sawyer", "《汤姆·索亚历险记》"),
    "ci.txt": ("the Song ci poems", "宋词"),
    "tang.txt": ("the Tang poems", "唐诗"),
    "lunyu.txt": ("the Analects (Lunyu)", "《论语》"),
    "shijing.txt": ("the Book of Songs (Shijing)", "《诗经》"),
}


def validation_cut(data, share):
    """Byte offset where the held-out part begins: the first line end after (1 - share) of the bytes."""
    if share <= 0:
        return len(data)
    at = int(len(data) * (1.0 - share))
    nl = data.find(b"\n", at)
    return len(data) if nl < 0 else nl + 1


def load_corpus(corpus, share, held_out):
    files = {}
    for lang in ("en", "zh"):
        folder = os.path.join(corpus, lang)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name not in WORKS:
                continue
            data = open(os.path.join(folder, name), "rb").read()
            cut = validation_cut(data, share)
            part = data[cut:] if held_out else data[:cut]
            lines = [l for l in part.decode("utf-8").split("\n") if l.strip()]
            if len(lines) >= 60:
                files[name] = (lang, lines)
    return files


def chat(user, assistant):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def corpus_task(rng, files):
    """(user, assistant, answer, kind) from the corpus; the answer is what a verifier compares."""
    name = rng.choice(sorted(files))
    lang, lines = files[name]
    i = rng.randrange(0, len(lines) - 40)
    zh_ui = rng.random() < 0.5 if lang == "en" else rng.random() < 0.8
    kind = rng.choice(["continue", "source", "next_line"])
    if lang == "zh" and kind == "continue":
        # A poem line split at a comma: the model completes the couplet.
        line = lines[i]
        comma = line.find("，")
        if 0 < comma < len(line) - 1:
            first, rest = line[: comma + 1], line[comma + 1:]
            return (*qa(f"请接着写下去：{first}", rest), "verse") if zh_ui else (*qa(f"Continue this verse: {first}", rest), "verse")
        kind = "next_line"
    if kind == "continue":
        passage = " ".join(lines[i:i + 2])
        words = passage.split()
        if len(words) < 8:
            kind = "next_line"
        else:
            cut = len(words) // 2
            head, tail = " ".join(words[:cut]), " ".join(words[cut:])
            return (*qa(f"续写这段文字：{head}", tail), "continue") if zh_ui else (*qa(f"Continue this passage: {head}", tail), "continue")
    if lang == "zh" and kind == "next_line" and name not in ("tang.txt", "ci.txt"):
        kind = "source"  # only the Tang and Song files head each poem with "title · author"
    if kind == "source":
        passage = " ".join(lines[i:i + 3]) if lang == "en" else "".join(lines[i:i + 2])
        en, zh = WORKS[name]
        return (*qa(f"这段文字出自哪部作品？\n{passage}", f"出自{zh}。", zh), "source") if zh_ui else \
            (*qa(f"Which work is this passage from?\n{passage}", f"It is from {en}.", en), "source")
    if lang == "zh":
        # Poems are one line each under a "title · author" line: ask who wrote the poem.
        j = next((j for j in range(i, i + 38) if " · " in lines[j] and " · " not in lines[j + 1]), None)
        if j is not None:
            title, author = lines[j].rsplit(" · ", 1)
            return (*qa(f"这首作品的作者是谁？题目是什么？\n{lines[j + 1]}", f"作者是{author}，题目是《{title}》。", author), "author") \
                if zh_ui else (*qa(f"Who wrote this, and what is its title?\n{lines[j + 1]}", f"{author}: {title}.", author), "author")
    return (*qa(f"下面这一行之后是哪一行？\n{lines[i]}", lines[i + 1]), "next_line") if zh_ui else \
        (*qa(f"What line comes after this one?\n{lines[i]}", lines[i + 1]), "next_line")


ZH_DIGITS = "零一二三四五六七八九"
WORDS_EN = ["apple", "river", "stone", "cloud", "tiger", "lamp", "garden", "window", "silver", "harbor", "candle", "forest"]
WORDS_ZH = ["山", "水", "月", "花", "风", "云", "雪", "春", "秋", "江", "鸟", "柳"]


def task(rng):
    """(user, assistant, answer, kind) of a generated task whose answer a program checks."""
    zh = rng.random() < 0.5
    kind = rng.choice(["add", "sub", "mul", "count", "copy", "reverse", "json", "upper"])
    return (*task_of_kind(rng, zh, kind), kind)


def task_of_kind(rng, zh, kind):
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    if kind == "add":
        return qa(f"{a} 加 {b} 等于多少？", f"{a} + {b} = {a + b}。", a + b) if zh else qa(f"What is {a} + {b}?", f"{a} + {b} = {a + b}.", a + b)
    if kind == "sub":
        return qa(f"{a} 减 {b} 等于多少？", f"{a} - {b} = {a - b}。", a - b) if zh else qa(f"What is {a} - {b}?", f"{a} - {b} = {a - b}.", a - b)
    if kind == "mul":
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        return qa(f"计算 {a} × {b}。", f"{a} × {b} = {a * b}。", a * b) if zh else qa(f"Compute {a} × {b}.", f"{a} × {b} = {a * b}.", a * b)
    if kind == "count":
        if zh:
            target = rng.choice(WORDS_ZH)
            text = "".join(rng.choice(WORDS_ZH) for _ in range(rng.randint(5, 16)))
            return qa(f"“{text}”里有几个“{target}”字？", f"{text.count(target)}个。", text.count(target))
        letter = rng.choice("aeiorst")
        word = " ".join(rng.choice(WORDS_EN) for _ in range(rng.randint(2, 5)))
        return qa(f"How many times does the letter '{letter}' appear in \"{word}\"?", f"{word.count(letter)}.", word.count(letter))
    if kind == "copy":
        words = [rng.choice(WORDS_ZH if zh else WORDS_EN) for _ in range(rng.randint(3, 8))]
        text = "".join(words) if zh else " ".join(words)
        return qa(f"请原样重复：{text}", text) if zh else qa(f"Repeat exactly: {text}", text)
    if kind == "reverse":
        items = [str(rng.randint(0, 99)) for _ in range(rng.randint(3, 7))]
        return qa(f"把这个列表倒过来：{', '.join(items)}", ", ".join(reversed(items))) if zh else \
            qa(f"Reverse this list: {', '.join(items)}", ", ".join(reversed(items)))
    if kind == "json":
        name = rng.choice(["Ada", "Li Bai", "Du Fu", "Emma", "Ishmael", "Elizabeth"])
        age = rng.randint(5, 90)
        answer = json.dumps({"name": name, "age": age}, ensure_ascii=False)
        return qa(f"把下面的信息写成 JSON：名字 {name}，年龄 {age}。", answer) if zh else \
            qa(f"Write this as JSON with keys name and age: {name}, {age} years old.", answer)
    word = " ".join(rng.choice(WORDS_EN) for _ in range(rng.randint(1, 4)))
    return qa(f"把这句英文改成大写：{word}", word.upper()) if zh else qa(f"Write in upper case: {word}", word.upper())


def qa(user, assistant, answer=None):
    """A task: the question, the assistant's reply (SFT) and the bare answer (RL's verifiers; the reply by default)."""
    return user, assistant, assistant if answer is None else answer


def corpus_item(rng, files, answer_line=0.0):
    return checkable_chat(rng, corpus_task(rng, files), answer_line)


def task_item(rng, answer_line=0.0):
    return checkable_chat(rng, task(rng), answer_line)


OPEN_ENDED = ("continue", "verse")  # corpus kinds no program can check


def is_chinese(text):
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def ask_for_answer_line(question):
    """The request for a last "Answer: X" line that `dsv2 grpo --reward exact-answer` reads (and make_rl_prompts asks)."""
    return question + ("\n最后一行写“答案：”和答案。" if is_chinese(question.split("\n")[0]) else
                       '\nEnd with a line "Answer: " and the answer.')


def checkable_chat(rng, item, answer_line):
    """A conversation; with probability answer_line (checkable kinds only) the question asks for the
    answer line and the reply ends with it, so a fine-tuned model learns the format RL prompts ask for."""
    question, reply, answer, kind = item
    if answer_line > 0 and kind not in OPEN_ENDED and rng.random() < answer_line:
        zh = is_chinese(question.split("\n")[0])
        return chat(ask_for_answer_line(question), f"{reply}\n{'答案：' if zh else 'Answer: '}{answer}")
    return chat(question, reply)


def parse_args(doc, count, kinds, extra=None):
    """The options this tool, make_rl_prompts.py and make_rm_data.py share (`extra(ap)` adds a tool's
    own); returns (args, kinds, corpus files)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    if extra:
        extra(ap)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=count)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--kinds", default=kinds)
    ap.add_argument("--validation-share", type=float, default=0.02)
    ap.add_argument("--held-out", action="store_true", help="passages only from the held-out part of each file")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    files = load_corpus(args.corpus, args.validation_share, args.held_out) if "corpus" in kinds else {}
    if "corpus" in kinds and not files:
        raise SystemExit(f"{args.corpus}: no corpus files found (give --corpus DIR or --kinds tasks)")
    return args, kinds, files


def main():
    def answer_line_option(ap):
        ap.add_argument("--answer-line", type=float, default=0.0,
                        help="share of checkable conversations that ask for and end with an 'Answer: X' line")
    args, kinds, files = parse_args(__doc__, 20000, "corpus,tasks", extra=answer_line_option)
    rng = random.Random(args.seed)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(args.count):
            kind = rng.choice(kinds)
            item = corpus_item(rng, files, args.answer_line) if kind == "corpus" else task_item(rng, args.answer_line)
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)  # never a half-written file under the final name
    print(f"{args.count} conversations -> {args.out}")


if __name__ == "__main__":
    main()
