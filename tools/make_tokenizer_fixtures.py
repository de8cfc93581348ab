#!/usr/bin/env python3
"""Tokenizer conformance fixtures from Hugging Face `tokenizers`.

Writes tests/fixtures/tokenizers/:
  deepseek_v2/   tokenizer.json + tokenizer_config.json: byte-level BPE with DeepSeek LLM/V2
                 pre-tokenizer rules, trained on ../shared/data/corpus (merges as "a b" strings)
  deepseek_v3/   the same with DeepSeek-V3 rules (merges as [a, b] pairs)
  variant/       GPT-2-style ByteLevel regex with add_prefix_space, an NFKC + Replace + Prepend
                 normalizer, ignore_merges, and added tokens with lstrip / rstrip / single_word /
                 normalized set, to cover the rest of the tokenizer.json surface
  cases.json     the test strings (hex of their UTF-8 bytes, some invalid) and, per tokenizer, the
                 ids HF produces with special tokens treated as text (dsv2's default) and with
                 special tokens recognised + the post-processor (dsv2 --special), and HF's decode
  trainer/       BpeTrainer output on a small corpus slice, for comparison with dsv2's trainer

Usage: pip install tokenizers; python3 tools/make_tokenizer_fixtures.py
"""
import json
import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_pretokenizers as ds  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tokenizers")
CORPUS = os.path.join(HERE, "..", "..", "shared", "data", "corpus")
CORPUS_FILES = [os.path.join(CORPUS, "en", f) for f in ("alice_in_wonderland.txt", "sherlock_holmes.txt",
                                                         "shakespeare.txt")] + \
               [os.path.join(CORPUS, "zh", f) for f in ("shijing.txt", "lunyu.txt", "tang.txt")]
TRAINER_FILES = [os.path.join(CORPUS, "en", "alice_in_wonderland.txt"), os.path.join(CORPUS, "zh", "shijing.txt")]
BOS, EOS = ds.SPECIAL_TOKENS[0], ds.SPECIAL_TOKENS[1]

TEXTS = [
    "", " ", "Hello, world!", "Hello world", " leading space", "trailing space   ", "The year 2024 has 366 days.",
    "3.14159265358979 and 1,000,000 and 0x7fff and 12345678901234567890",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "He said: \"Don't!\" -- and I'm sure they'll go; we've seen it.",
    "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？", "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "中文English混合text 123 测试", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم، هذا نص عربي.", "Ελληνικά γράμματα και Ωμέγα", "Кириллица: Привет, мир!",
    "def f(x):\n    return x**2  # square\n\n\tif x > 0:\n\t\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }", "emoji 👍🏽 flags 🇺🇸🇨🇳 family 👨‍👩‍👧‍👦 ok",
    "math 𝕏𝕐 ancient 𐐀𐐁 musical 𝄞", "a  b   c    d\n\n\ne\r\nf\t\tg   \n  h",
    "line one\nline two  \nline three\n", "\n\n\n", "   ", "\t", "x\u3000y\u00a0z\u2003w",
    BOS + "Hello" + EOS, "User: hi" + ds.SPECIAL_TOKENS[3] + "Assistant" + ds.SPECIAL_TOKENS[4] + " ok",
    "<｜begin▁of▁sentence", "ﬁ ligature Ｆｕｌｌｗｉｄｔｈ ①②③ ™",
    "<think>reasoning</think> answer", "the hello_world token and xhello_world", "tab\t<think>  spaced  </think>\tend",
    "Mixed 123abc456 ٣٤٥ ০১২ ²³", "..., !!! ??? ~~~ ``` *** ___",
    "A" * 300, "ab" * 200, "中" * 120,
]
INVALID_UTF8 = [b"\xff", b"abc\xe4\xb8", b"\xe4\xb8\xadmid\xff\xfeend", b"\xc0\x80 overlong", b"\xed\xa0\x80 surrogate",
                b"\xf4\x90\x80\x80 too big", b"ok\x80\x80\x80ok"]


def train(pre, vocab_size, files, extra_normalizer=None):
    tok = Tokenizer.from_str(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []},
                                         "pre_tokenizer": pre}))
    if extra_normalizer:
        tok.normalizer = extra_normalizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=ds.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train(files, trainer)
    tok.decoder = decoders.ByteLevel()
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)])
    return tok


def save(tok, name, merges_as_strings, add_bos=True):
    return save_to(tok, os.path.join(OUT, name), merges_as_strings, add_bos)


def save_to(tok, d, merges_as_strings, add_bos=True):
    os.makedirs(d, exist_ok=True)
    j = json.loads(tok.to_str())
    if merges_as_strings:
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
    cfg = {"add_bos_token": add_bos, "add_eos_token": False, "bos_token": {"__type": "AddedToken", "content": BOS},
           "eos_token": {"__type": "AddedToken", "content": EOS}, "pad_token": ds.SPECIAL_TOKENS[2],
           "model_max_length": 16384, "tokenizer_class": "LlamaTokenizerFast", "clean_up_tokenization_spaces": False,
           "legacy": True}
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # what dsv2 will read


def cases_for(tok):
    rows = []
    inputs = [t.encode("utf-8") for t in TEXTS] + INVALID_UTF8
    for raw in inputs:
        text = raw.decode("utf-8", errors="replace")
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        special = tok.encode(text, add_special_tokens=True).ids
        rows.append({"hex": raw.hex(), "ids": plain, "ids_special": special,
                     "decoded": tok.decode(plain, skip_special_tokens=False).encode("utf-8").hex()})
    # Decoding id runs that split UTF-8 characters gives U+FFFD, as HF does.
    byte_ids = [tok.token_to_id(c) for c in pre_tokenizers.ByteLevel.alphabet()]
    byte_ids = sorted(i for i in byte_ids if i is not None)
    decode_only = []
    for ids in ([byte_ids[200]], byte_ids[150:160], [byte_ids[65], byte_ids[230], byte_ids[66]]):
        decode_only.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False).encode("utf-8").hex()})
    return rows, decode_only


def main():
    os.makedirs(OUT, exist_ok=True)
    result = {}
    v2 = save(train(ds.DEEPSEEK_V2, 4000, CORPUS_FILES), "deepseek_v2", merges_as_strings=True)
    v3 = save(train(ds.DEEPSEEK_V3, 4000, CORPUS_FILES), "deepseek_v3", merges_as_strings=False)

    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\t", "    "), normalizers.Prepend("▁")])
    gpt2 = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    var = train(gpt2, 1500, TRAINER_FILES, extra_normalizer=norm)
    var.add_tokens([AddedToken("<think>", special=False, lstrip=True, rstrip=False, normalized=False),
                    AddedToken("</think>", special=False, lstrip=False, rstrip=True, normalized=True),
                    AddedToken("hello_world", special=False, single_word=True, normalized=False)])
    j = json.loads(var.to_str())
    j["model"]["ignore_merges"] = True
    var = Tokenizer.from_str(json.dumps(j))
    var = save(var, "variant", merges_as_strings=False, add_bos=False)

    for name, tok in (("deepseek_v2", v2), ("deepseek_v3", v3), ("variant", var)):
        rows, decode_only = cases_for(tok)
        result[name] = {"cases": rows, "decode_only": decode_only}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"made_by": "tools/make_tokenizer_fixtures.py", "tokenizers_version": __import__("tokenizers").__version__,
                   **result}, f)

    # The trainer reference: same files, same settings as `dsv2 tokenizer train --vocab-size 1000 --pre deepseek-v2`.
    ref = train(ds.DEEPSEEK_V2, 1000, TRAINER_FILES)
    d = os.path.join(OUT, "trainer_v2_1000")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(ref.to_str())
    print("wrote", OUT)


if __name__ == "__main__":
    main()
