"""Writes tests/fixtures/v3_mtp/tokenizer.json and tokenizer_config.json: a tokenizer whose 128 ids
fit the fixture's vocabulary (vocab_size 128), so that `dsv2 serve` and `dsv2 chat` run on it.

It is DeepSeek-V2's tokenizer setup (pre-tokenizer, decoder, post-processor and special tokens, taken
from tests/fixtures/v2_lite/tokenizer.json) with no merges and a byte-level alphabet cut down to what
fits: the 8 special tokens, printable ASCII, newline and tab, and 23 other control bytes. Text outside
that alphabet cannot be encoded; the tests use ASCII. Needs only the standard library.
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "tests", "fixtures", "v2_lite")
DEST = os.path.join(ROOT, "tests", "fixtures", "v3_mtp")
VOCAB_SIZE = 128


def byte_level_char(b):
    """GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the rest shift to 256+."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def main():
    with open(os.path.join(SOURCE, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    specials = len(tok["added_tokens"])
    alphabet = list(range(0x20, 0x7F)) + [0x0A, 0x09]
    alphabet += [b for b in range(0x20) if b not in alphabet][: VOCAB_SIZE - specials - len(alphabet)]
    vocab = {t["content"]: t["id"] for t in tok["added_tokens"]}
    for i, b in enumerate(alphabet):
        vocab[byte_level_char(b)] = specials + i
    assert len(vocab) == VOCAB_SIZE
    tok["model"]["vocab"] = vocab
    tok["model"]["merges"] = []
    with open(os.path.join(DEST, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    with open(os.path.join(SOURCE, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(DEST, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
