#!/usr/bin/env bash
# Writes data/imagenet1k_glosses.tsv: the WordNet 3.0 gloss (definition) of
# each ImageNet-1k class, for the D3S baseline's prompts ("a photo of a
# {class}, {definition}, {background}").  Run once by a maintainer; the file
# is committed, so builds need no WordNet.  Needs Debian's wordnet-base.
set -euo pipefail
cd "$(dirname "$0")/.."
WN=${WN:-/usr/share/wordnet/data.noun}
[ -r "$WN" ] || { echo "glosses.sh: $WN missing (apt-get install wordnet-base)" >&2; exit 1; }
python3 - "$WN" data/imagenet1k.tsv data/imagenet1k_glosses.tsv <<'PY'
import sys
wn, classes, out = sys.argv[1:]
gloss = {}
for line in open(wn, encoding="latin-1"):
    if line.startswith("  ") or " | " not in line:
        continue
    gloss[line[:8]] = line.split(" | ", 1)[1].strip().split("; \"")[0].strip()
rows = []
for line in open(classes):
    if line.startswith("#") or not line.strip():
        continue
    f = line.rstrip("\n").split("\t")
    wnid = next(x for x in f if x.startswith("n") and len(x) == 9 and x[1:].isdigit())
    g = gloss.get(wnid[1:])
    if g is None:
        sys.exit(f"no WordNet entry for {wnid}")
    rows.append(f"{wnid}\t{g.replace(chr(9), ' ')}")
with open(out, "w") as o:
    o.write("# wnid\tgloss (WordNet 3.0, data.noun; tools/glosses.sh)\n")
    o.write("\n".join(rows) + "\n")
print(f"{len(rows)} glosses -> {out}")
PY
