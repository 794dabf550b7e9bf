"""spm_ref.py: SentencePiece reference outputs for tests/unit/test_ml_spm.c.

ml/spm.cpp wraps Debian's libsentencepiece for T5's spiece.model and LLaMA's
tokenizer.model.  No real model can be downloaded where shiftforge is built,
so this script trains two tiny ones with python's sentencepiece (Debian's
python3-sentencepiece) on a small generated corpus, shaped as the real ones
are:

  t5.model     unigram, NFKC normalisation, extra whitespace removed;
               <pad> 0, </s> 1, <unk> 2, no <s> (T5's spiece.model);
  llama.model  BPE with byte fallback, no normalisation, whitespace kept,
               digits split; <unk> 0, <s> 1, </s> 2, no <pad> (LLaMA's
               tokenizer.model);

and writes, for each, a JSON-lines file: a first line with the vocabulary
(every piece, the special ids) and then one line per test string (several
scripts, emoji, whitespace runs, tabs and newlines, digits, characters the
corpus never had, text that spells the special tokens, the empty string,
long strings) with the ids and the decoded text python's sentencepiece gives
and the same with the family's special tokens (sentencepiece's own add_bos /
add_eos), and a few random id sequences with their decoding.  The cuts to a
maximum length are the rule of HF's tokenizers, written out below.

    /usr/bin/python3 tools/numerics/spm_ref.py OUT_DIR

It writes OUT_DIR/{t5,llama}.model and OUT_DIR/{t5,llama}.jsonl (the C test
runs it into a temporary folder: the models are not committed).  Training
uses one thread and a fixed corpus, so the output depends only on the
sentencepiece version.
"""
import json
import os
import random
import sys

import sentencepiece as spm

# The maximum lengths each string is also cut to (HF's max_length).
CUTS = [1, 2, 3, 5, 8, 16, 64]

ENGLISH = ("a photo of the cat dog bird on in at with and small large red blue green yellow black white "
           "house tree river mountain beach forest road snow night day sketch painting cartoon toy car "
           "boat plane train street city garden flower sky cloud rain sun light dark old new happy running "
           "sitting standing flying swimming under over near behind between picture image drawing close up "
           "view from above jellyfish goldfish hummingbird lighthouse").split()
ACCENTED = "café naïve façade über straße fähre élève garçon niño mañana jalapeño smørrebrød crème brûlée".split()
CYRILLIC = "кошка собака дом река лес снег ночь красный синий фото".split()
GREEK = "γάτα σκύλος σπίτι ποτάμι δάσος χιόνι νύχτα".split()
CJK = "猫 狗 房子 河 森林 雪 夜 写真 ねこ いぬ カメラ".split()
PUNCT = list(".,;:!?'\"()[]-_/&%$#@*+=<>")
# Never in the corpus: unknown to the unigram model, bytes to the BPE one.
UNSEEN = ["🐱", "🐶", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "ไทย", "हिन्दी", "한국어", "العربية", "עברית", "∮", "⊕",
          "ℵ", "Ω", "ǅ", "\u00ad", "\u200b", "ꙮ", "𝐀𝐁𝐂", "Ａｂｃ", "ﬁ", "①", "㎏", "e\u0301", "\U0001f600"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", " \t ", "\r\n", "\u3000", "\u00a0", ""]


def corpus(rng):
    """Sentences over every pool but UNSEEN, digits and numbers included."""
    pools = [ENGLISH] * 6 + [ACCENTED, CYRILLIC, GREEK, CJK]
    lines = []
    for _ in range(3000):
        words = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.08:
                words.append(str(rng.randint(0, 100000)))
            elif r < 0.14:
                words.append(rng.choice(PUNCT))
            else:
                words.append(rng.choice(rng.choice(pools)))
        lines.append(" ".join(words))
    return lines


def train(dirname, lines):
    path = os.path.join(dirname, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    common = dict(input=path, num_threads=1, character_coverage=1.0, minloglevel=2,
                  input_sentence_size=0, shuffle_input_sentence=False)
    spm.SentencePieceTrainer.train(
        model_prefix=os.path.join(dirname, "t5"), model_type="unigram", vocab_size=400,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True, **common)
    spm.SentencePieceTrainer.train(
        model_prefix=os.path.join(dirname, "llama"), model_type="bpe", vocab_size=700, byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, **common)


def strings(rng):
    """The test strings: hand-picked cases, then seeded random mixtures."""
    fixed = [
        "", " ", "  ", "\t", "\n", " \t\n ", "a", "A", "a photo of a cat", "  a photo of a cat  ",
        "a  photo   of\ta\tcat\non the beach", "A PHOTO OF THE CAT", "0", "42", "3.14159", "1,000,000",
        "2026-12-07 21:58", "007", "x1y2z3", "café naïve", "Straße", "кошка на снегу", "γάτα", "猫と犬",
        "写真 of a 猫", "🐱", "a 🐱 and a 🐶", "👨‍👩‍👧", "🏳️‍🌈 flag", "ไทย", "हिन्दी", "한국어 텍스트",
        "العربية", "עברית", "∮ ⊕ ℵ", "Ａｂｃ", "ﬁsh", "①②③", "e\u0301", "\u00ad", "zero\u200bwidth",
        "</s>", "<s>", "<unk>", "<pad>", "a </s> b", "<0x41>", "▁", "▁▁a", "_underscore_", "\\", "\"quoted\"",
        "tab\there", "line\nbreak", "crlf\r\nline", "\u3000ideographic space", "nbsp\u00a0here",
        "trailing   ", "   leading", "!!!", "???", "....", "a" * 50, "ab" * 40, "🐱" * 12,
        "the " * 60, "123456789012345678901234567890",
    ]
    pools = [ENGLISH] * 4 + [ACCENTED, CYRILLIC, GREEK, CJK, UNSEEN, PUNCT]
    out = list(fixed)
    while len(out) < 620:
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.12:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            else:
                parts.append(rng.choice(rng.choice(pools)))
            parts.append(rng.choice(SPACES))
        s = "".join(parts)
        if rng.random() < 0.2:
            s = rng.choice(SPACES) + s
        out.append(s)
    return out


def hf_cut(ids, max_length, pre, post):
    """HF's rule (transformers' prepare_for_model, the tokenizers library's
    post_process): the text's ids are cut to max_length minus the special
    tokens first, then the special tokens are added."""
    keep = ids[:max(0, max_length - len(pre) - len(post))]
    return pre + keep + post


def write(dirname, name, texts, rng):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(dirname, name + ".model"))
    n = sp.get_piece_size()
    unk, bos, eos, pad = sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()
    with open(os.path.join(dirname, name + ".jsonl"), "w", encoding="utf-8") as f:
        head = {"vocab": [sp.id_to_piece(i) for i in range(n)], "unk": unk, "bos": bos, "eos": eos, "pad": pad,
                "cuts": CUTS}
        f.write(json.dumps(head, ensure_ascii=False) + "\n")
        for text in texts:
            ids = sp.encode(text)
            row = {"text": text, "ids": ids, "decoded": sp.decode(ids)}
            if name == "t5":
                # T5: sentencepiece's own add_eos, and the cuts.
                row["family"] = sp.encode(text, add_eos=True)
                row["cut"] = {str(m): hf_cut(ids, m, [], [eos]) for m in CUTS}
            else:
                row["family"] = sp.encode(text, add_bos=True)
                row["family_eos"] = sp.encode(text, add_bos=True, add_eos=True)
                row["cut"] = {str(m): hf_cut(ids, m, [bos], []) for m in CUTS}
                row["cut_eos"] = {str(m): hf_cut(ids, m, [bos], [eos]) for m in CUTS if m >= 2}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        # Random id sequences (control, unknown and byte pieces included),
        # decoded: byte pieces that are not UTF-8 become U+FFFD.  The byte
        # piece <0x00> is left out: a C string cannot hold what it decodes to.
        usable = [i for i in range(n) if sp.id_to_piece(i) != "<0x00>"]
        for _ in range(100):
            ids = [rng.choice(usable) for _ in range(rng.randint(0, 12))]
            f.write(json.dumps({"decode": ids, "decoded": sp.decode(ids)}, ensure_ascii=False) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: spm_ref.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    train(out, corpus(random.Random(23)))
    texts = strings(random.Random(2323))
    for name in ("t5", "llama"):
        write(out, name, texts, random.Random(17))
    print(f"spm_ref: {len(texts)} strings, sentencepiece {spm.__version__}, in {out}")


if __name__ == "__main__":
    main()
