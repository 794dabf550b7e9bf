#!/usr/bin/env bash
# Regenerates every numerics fixture in tests/fixtures/numerics/ from the
# independent references: torchvision's ConvNeXt and ViT (classifiers.py),
# torch.nn forward passes of CLIP and GPT-2 written from the published
# architectures and OpenAI's CLIP tokenizer algorithm (clip_gpt2.py,
# clip_bpe_ref.py).  Needs Debian's python3-torch, python3-torchvision,
# python3-numpy and python3-regex; takes a minute or two.  The C tests
# (tests/unit/test_ml_numerics_*.c, test_clip_bpe_ref.c) compare against them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${SF_TORCH_PYTHON:-/usr/bin/python3}
"$PY" tools/numerics/classifiers.py
"$PY" tools/numerics/clip_gpt2.py
git status --short tests/fixtures/numerics
