"""t5_rows_ref.py: the token rows DeepFloyd IF's pipeline gives its T5
encoder, for tests/unit/test_ml_diffusion_if.c.

IFPipeline.encode_prompt (diffusers) preprocesses a prompt without
clean_caption as text.lower().strip(), then calls T5Tokenizer with
padding="max_length", max_length=77, truncation=True: the pieces, cut so
that </s> (id 1) still ends the row, then pad ids (0) to 77.  This writes
those rows from python's sentencepiece (Debian's python3-sentencepiece),
independently of ml/spm.cpp and ml/diffusion.cpp:

    /usr/bin/python3 tools/numerics/t5_rows_ref.py MODEL PROMPTS.json OUT.json

PROMPTS.json is a JSON list of strings; OUT.json gets a list of rows.
"""
import json
import sys

import sentencepiece as spm

MAX_LENGTH = 77
EOS, PAD = 1, 0


def row(sp, text):
    ids = sp.encode(text.lower().strip())
    ids = ids[:MAX_LENGTH - 1] + [EOS]
    return ids + [PAD] * (MAX_LENGTH - len(ids))


def main():
    model, prompts, out = sys.argv[1:4]
    sp = spm.SentencePieceProcessor(model_file=model)
    assert sp.eos_id() == EOS and sp.pad_id() == PAD, (sp.eos_id(), sp.pad_id())
    with open(prompts, encoding="utf-8") as f:
        texts = json.load(f)
    with open(out, "w", encoding="utf-8") as f:
        json.dump([row(sp, t) for t in texts], f)


if __name__ == "__main__":
    main()
