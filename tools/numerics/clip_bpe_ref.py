"""clip_bpe_ref.py: an independent reference for CLIP's BPE tokenizer.

common/text/clip_bpe.c was checked only against ids it had partly produced
itself.  This is OpenAI CLIP's simple_tokenizer written again from its
published algorithm, in Python, so that the C tokenizer can be compared with
something that shares none of its code:

  1. clean: html.unescape twice, strip.  OpenAI runs ftfy.fix_text first;
     ftfy is not installed here and the C tokenizer has no such step, so the
     reference skips it: for the few strings below that ftfy would change
     (control characters such as \v and \f, a soft hyphen, the ideographic
     space) these are the ids without it.  None has mojibake, curly quotes,
     ligatures or decomposed accents;
  2. every run of whitespace (Unicode's \\s) becomes one space, strip, then
     Python's full Unicode lower-casing;
  3. split with the pattern
       <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
     (the `regex` module, IGNORECASE);
  4. each piece's UTF-8 bytes through GPT-2's bytes_to_unicode table, "</w>"
     appended to the last symbol, pairs merged lowest rank first (every
     occurrence of the chosen pair, left to right) until no pair has a rank;
  5. <|startoftext|> ids <|endoftext|>; a text longer than the context keeps
     its first context-length ids with the last replaced by <|endoftext|>
     (OpenAI's tokenize(..., truncate=True), and HF's truncation).

It runs over two vocabularies: the unit tests' (tests/fixtures/clip) and the
world CLIP's (models/clip-world), on a few hundred strings, and writes
tests/fixtures/numerics/clip_bpe_ids.json, which
tests/unit/test_clip_bpe_ref.c compares with the C tokenizer id for id.

    /usr/bin/python3 tools/numerics/clip_bpe_ref.py
"""
import html
import json
import os
import random
import sys

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "numerics", "clip_bpe_ids.json")
VOCABS = {
    "fixture": ("tests/fixtures/clip/vocab.json", "tests/fixtures/clip/merges.txt"),
    "world": ("models/clip-world/vocab.json", "models/clip-world/merges.txt"),
}
# The contexts each string is also cut to: CLIP's 77, the world CLIP's 32 and
# a short one, so that many strings exercise the cut.
CONTEXTS = [77, 32, 8]
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


def bytes_to_unicode():
    """GPT-2's table: the printable Latin-1 bytes stand for themselves, the
    other 68 bytes take the code points from 256 upwards, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Tokenizer:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().strip().split("\n")
        # The first line is "#version: ..."; OpenAI keeps at most 48894 merges.
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1] if line.strip()]
        self.ranks = {}
        for r, m in enumerate(merges):
            self.ranks.setdefault(m, r)
        self.byte_encoder = bytes_to_unicode()
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]

    def bpe(self, piece):
        if piece in (SOT, EOT):
            return [piece]
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text):
        """The ids of text between the start and end tokens, not cut."""
        text = html.unescape(html.unescape(text)).strip()
        text = regex.sub(r"\s+", " ", text).strip().lower()
        ids = [self.sot]
        for piece in PATTERN.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            if piece in (SOT, EOT):
                mapped = piece
            ids.extend(self.encoder[s] for s in self.bpe(mapped))
        ids.append(self.eot)
        return ids

    def cut(self, ids, ctx):
        if len(ids) <= ctx:
            return ids
        out = ids[:ctx]
        out[-1] = self.eot
        return out


LETTER = regex.compile(r"\p{L}")


def limits(text):
    """What in `text` the C tokenizer does not implement (its rules are
    ASCII's: every byte >= 0x80 is a letter, only ASCII whitespace, ASCII
    lower-casing; no html unescaping; the special tokens' text is plain text).
    Read from the string alone, never from the C tokenizer's output:
      html     html.unescape changes it;
      special  it spells <|startoftext|> or <|endoftext|>;
      unicode  a character >= 0x80 that is not a letter that lower-casing
               keeps (Unicode whitespace, digits, punctuation, symbols, marks,
               upper- and title-case letters)."""
    out = []
    clean = html.unescape(html.unescape(text))
    if clean != text:
        out.append("html")
    if SOT in clean.lower() or EOT in clean.lower():
        out.append("special")
    if any(ord(c) >= 0x80 and not (LETTER.fullmatch(c) and c.lower() == c) for c in clean):
        out.append("unicode")
    return out


def world_words():
    """Whole words of the world vocabulary (tokens ending in </w>, letters only)."""
    with open(os.path.join(ROOT, VOCABS["world"][0]), encoding="utf-8") as f:
        v = json.load(f)
    return sorted(t[:-4] for t in v if t.endswith("</w>") and len(t) > 5 and t[:-4].isalpha())


def strings():
    """The test strings: hand-picked cases, then seeded random mixtures."""
    fixed = [
        "", " ", "   \t\n  ", "a", "A", "a photo of a cat", "  A Photo of\ta CAT on the beach!",
        "a photo of a cat.", "A PHOTO OF THE CATS ON THE BEACH", "cats catsup", "zebra", "sketch of it",
        "IT's 42...", "it's", "IT'S", "they're we've I'm you'll he'd can't", "'s", "''s", "x'sy", "!'s",
        "rock'n'roll", "o'clock", "'hello'", "\"quoted\"", "don't stop", "ma'am",
        "3.14159", "1,000,000", "room 101", "2024-01-15", "v2.0", "abc123def", "123abc", "0", "007",
        "hello, world!", "what?!", "...", "--", "a--b", "(parens)", "[brackets] {braces}", "a/b\\c",
        "#hashtag @mention", "100%", "$5.99", "e-mail", "x_y_z", "a+b=c", "<html>", "~tilde~", "`code`",
        "semi;colon:colon", "a|b", "^caret", "*stars*",
        "a  b", "a\tb", "a\nb", "a\r\nb", "  leading", "trailing  ", "a\u00a0b", "a\u2003b", "a\u3000b",
        "a\u2028b", "a\x0bb\x0cc",
        "&amp;", "fish &amp; chips", "&lt;tag&gt;", "&amp;amp;", "&quot;hi&quot;", "&#39;s", "&#x41;BC",
        "caf\u00e9", "CAF\u00c9", "na\u00efve r\u00e9sum\u00e9", "\u00fcber stra\u00dfe", "STRASSE stra\u00dfe",
        "\u00c5ngstr\u00f6m", "\u0130stanbul", "\u03a3\u03bf\u03c6\u03af\u03b1", "\u039f\u0394\u039f\u03a3",
        "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u65e5\u672c\u8a9e\u306e\u6587",
        "\u4f60\u597d\uff0c\u4e16\u754c", "\ud55c\uad6d\uc5b4", "\u0645\u0631\u062d\u0628\u0627",
        "\u05e9\u05dc\u05d5\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
        "caf\u00e9\u2014bar", "price \u20ac5", "\u00a3100", "\u00bd cup", "x\u00b2 + y\u00b2", "\u2163 iv",
        "\u0663\u0664 arabic digits", "\u00a9 2024", "\u2122 mark", "smile \U0001f600", "\U0001f431\U0001f436",
        "a \u2192 b", "\u00bfqu\u00e9?", "\u00a1hola!", "\u00abguillemets\u00bb", "\u2026", "na\u00efve\u2026",
        "\u00b0C", "5\u00b0", "\u00d7 times \u00f7", "\u00b5m", "\u00aa\u00ba", "\u00df", "\u0111\u0110",
        "\u01c5", "\u1e9e", "\u2160\u2161\u2162", "\u00e6\u00f8\u00e5 \u00c6\u00d8\u00c5",
        "mixed caf\u00e9 42 \u65e5\u672c! it's", "tab\u00e9\t\u00e9", "emoji\U0001f600word",
        "\u200bzero\u200bwidth", "soft\u00adhyphen", "\u00a0\u00a0\u00a0",
        "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "<|ENDOFTEXT|>",
        "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "a" * 80, "ab" * 150, "the " * 40, "1 2 3 4 5 6 7 8 9 " * 6, "! " * 50,
        "photo photograph photon phot pho ph p", "beachy beaches beach", "thethe", "catcat cat",
        "sketchbook", "ofon onof", "it it it",
    ]
    rng = random.Random(20240115)
    words = world_words()
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-()&#/ \t") + [
        "\u00e9", "\u00c9", "\u00fc", "\u00df", "\u00f1", "\u03c0", "\u0416", "\u65e5", "\u20ac", "\u2014",
        "\u00bd", "\u00b2", "\U0001f600", "\u00a0", "&amp;", "'s", "'ll", "\n",
    ]
    out = list(fixed)
    for _ in range(160):
        n = rng.randint(1, 24)
        out.append("".join(rng.choice(alphabet) for _ in range(n)))
    for _ in range(140):
        n = rng.randint(1, 30)
        parts = []
        for _ in range(n):
            w = rng.choice(words)
            r = rng.random()
            if r < 0.15:
                w = w.upper()
            elif r < 0.25:
                w = w.capitalize()
            elif r < 0.35:
                w = w + rng.choice([".", ",", "!", "'s", "s", "ing", "\u00e9", "42"])
            elif r < 0.40:
                w = w[: rng.randint(1, len(w))] + rng.choice(["x", "q", "zz"])
            parts.append(w)
        out.append(rng.choice([" ", "  ", " \t", "\n"]).join(parts))
    return out


def main():
    toks = {name: Tokenizer(os.path.join(ROOT, v), os.path.join(ROOT, m)) for name, (v, m) in VOCABS.items()}
    cases = []
    for s in strings():
        case = {"text": s}
        lim = limits(s)
        if lim:
            case["limits"] = lim
        for name, t in toks.items():
            ids = t.encode(s)
            entry = {"ids": ids}
            for ctx in CONTEXTS:
                if len(ids) > ctx:
                    entry["cut%d" % ctx] = t.cut(ids, ctx)
            case[name] = entry
        cases.append(case)
    doc = {
        "what": "ids of OpenAI CLIP's simple_tokenizer (tools/numerics/clip_bpe_ref.py, an independent "
                "reference, without ftfy), for tests/unit/test_clip_bpe_ref.c",
        "vocabularies": {name: {"vocab": v, "merges": m} for name, (v, m) in VOCABS.items()},
        "contexts": CONTEXTS,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("%s: %d strings, %d bytes" % (os.path.relpath(OUT, ROOT), len(cases), os.path.getsize(OUT)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
