"""spm_train_ref.py: python's sentencepiece beside tests/unit/test_ml_llama_train.c,
which checks the LLaMA tokenizer trainer of ml/spm.cpp (sf_spm_train_llama).

    /usr/bin/python3 tools/numerics/spm_train_ref.py corpus OUT_DIR
        OUT_DIR/corpus.txt   spm_ref.py's seeded corpus (3000 lines of
                             several scripts, digits and punctuation)
        OUT_DIR/strings.json spm_ref.py's test strings (620: whitespace runs,
                             tabs, newlines, digits, unseen characters, ...)
        OUT_DIR/py.model     python's SentencePieceTrainer on corpus.txt with
                             the settings sf_spm_train_llama documents
                             (LLaMA's: BPE, byte fallback, unk 0, <s> 1,
                             </s> 2, no pad, identity normalisation, digits
                             split, whitespace kept), vocabulary 700
    /usr/bin/python3 tools/numerics/spm_train_ref.py encode MODEL STRINGS.json OUT.json
        OUT.json  {"pieces": [...], "unk": .., "bos": .., "eos": .., "pad": ..,
                   "ids": [[...] per string], "decoded": [text per string]}
                  python's sentencepiece's view of MODEL (a model the C code
                  trained): its vocabulary and each string's pieces' ids
                  (no special tokens) and their decoding.
"""
import json
import os
import random
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spm_ref  # noqa: E402  (its corpus and test strings)


def corpus(out):
    os.makedirs(out, exist_ok=True)
    lines = spm_ref.corpus(random.Random(1))
    path = os.path.join(out, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "strings.json"), "w", encoding="utf-8") as f:
        json.dump(spm_ref.strings(random.Random(2)), f, ensure_ascii=False)
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=os.path.join(out, "py"), model_type="bpe", vocab_size=700,
        byte_fallback=True, split_digits=True, character_coverage=1.0, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        split_by_unicode_script=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False, hard_vocab_limit=False, minloglevel=2)


def encode(model, strings, out):
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(strings, encoding="utf-8") as f:
        texts = json.load(f)
    ids = [sp.encode(t) for t in texts]
    res = {"pieces": [sp.id_to_piece(i) for i in range(sp.get_piece_size())], "unk": sp.unk_id(),
           "bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id(), "ids": ids,
           "decoded": [sp.decode(x) for x in ids]}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["corpus"] and len(sys.argv) == 3:
        corpus(sys.argv[2])
    elif sys.argv[1:2] == ["encode"] and len(sys.argv) == 5:
        encode(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
