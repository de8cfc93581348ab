"""DeepSeek's byte-level BPE pre-tokenizer rules, as tokenizers.json pre_tokenizer objects.

DeepSeek LLM / V2: newlines alone; runs of cased letters with an optional leading space; runs of
ASCII/fullwidth/CJK punctuation with an optional leading space; trailing whitespace; CJK/Hangul
runs; every digit on its own. DeepSeek-V3: digits in groups of up to three; CJK and kana runs;
then a GPT-4-like rule. Code points are written as escapes on purpose: several of them (U+1F7D,
U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) change under NFC, and copies of these patterns that went
through a normaliser have broken ranges.
"""


def _ranges(spec):
    out = []
    for item in spec.split():
        if "-" in item:
            a, b = item.split("-")
            out.append(chr(int(a, 16)) + "-" + chr(int(b, 16)))
        else:
            out.append(chr(int(item, 16)))
    return "".join(out)


V2_LETTERS = _ranges(
    "41-5A 61-7A B5 C0-D6 D8-F6 F8-1BA 1BC-1BF 1C4-293 295-2AF 370-373 376 377 37B-37D 37F 386 388-38A 38C "
    "38E-3A1 3A3-3F5 3F7-481 48A-52F 531-556 10A0-10C5 13A0-13F5 13F8-13FD 1C90-1CBA 1CBD-1CBF 1D00-1D2B "
    "1D6B-1D77 1D79-1D9A 1E00-1F15 1F18-1F1D 1F20-1F45 1F48-1F4D 1F50-1F57 1F59 1F5B 1F5D 1F5F-1F7D "
    "1F80-1FB4 1FB6-1FBC 1FBE 1FC2-1FC4 1FC6-1FCC 1FD0-1FD3 1FD6-1FDB 1FE0-1FEC 1FF2-1FF4 1FF6-1FFC 2102 "
    "2107 210A-2113 2115 2119-211D 2124 2126 2128 212A-212D 212F-2134 2139 213C-213F 2145-2149 214E 2183 "
    "2184 2C00-2C7B 2C7E-2CE4 2CEB-2CEE 2CF2 2CF3 A640-A66D A680-A69B A722-A76F A771-A787 A78B-A78E "
    "AB70-ABBF FB00-FB06 FB13-FB17 FF21-FF3A FF41-FF5A 10400-1044F 104B0-104D3 104D8-104FB 10C80-10CB2 "
    "10CC0-10CF2 118A0-118DF 1E900-1E943")
V2_PUNCT = _ranges("21-2F 3A-7E FF01-FF0F FF1A-FF5E 2018-201F 3000-3002")
V2_CJK = _ranges("4E00-9FA5 800-4E00 AC00-D7FF")
V3_CJK = _ranges("4E00-9FA5 3040-309F 30A0-30FF")


def _split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}

DEEPSEEK_V2 = {"type": "Sequence", "pretokenizers": [
    _split("[\r\n]"),
    _split("\\s?[" + V2_LETTERS + "]+"),
    _split("\\s?[" + V2_PUNCT + "]+"),
    _split("\\s+$"),
    _split("[" + V2_CJK + "]+"),
    {"type": "Digits", "individual_digits": True},
    BYTE_LEVEL,
]}

DEEPSEEK_V3 = {"type": "Sequence", "pretokenizers": [
    _split("\\p{N}{1,3}"),
    _split("[" + V3_CJK + "]+"),
    _split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
           " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
    BYTE_LEVEL,
]}

SPECIAL_TOKENS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
                  "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"]
