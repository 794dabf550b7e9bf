# low-density, the baseline a real deployment could run (Sehwag et al.'s
# idea with the generator, CLIP and the reference statistics only): every
# image is, of best_of_n generations of "a photo of a <class>", the one the
# filter keeps that is least likely under a Gaussian of the class's reference
# embeddings.  Checked from the files the runs wrote, in pure Python (no code
# of the project's): the Mahalanobis distances under the shrunk Gaussian, and
# the choice against the same run with one candidate, whose image is
# candidate 0 of the four.  A threshold above the calibrated one makes the
# filter reject about half, so that the choice must heed it.  low-density-oracle runs on the world's generator
# only.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
D="$T/data"
start_redis
start_coordinator
start_workers 2 --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2"
COMMON=(--method shift --classes stingray,junco --captions-per-class 8 --reference-images 24 --seed 5
        --finetune-images-per-class 0 --filter-threshold 0.6 --strategy)
r4=$(submit "${COMMON[@]}" low-density --best-of-n 4)
r1=$(submit "${COMMON[@]}" low-density --best-of-n 1)
ro=$(submit "${COMMON[@]}" low-density-oracle)
for r in "$r4" "$r1" "$ro"; do wait_state "$r" done 300; done
ok "low-density with 4 and 1 candidates and low-density-oracle ran"

python3 - "$D" "$r4" "$r1" <<'PY' || fail "low-density's choice"
import json, math, os, sys
data, r4, r1 = sys.argv[1:]

from safetensors_read import tensors

def gaussian(x):
    """Mean and Cholesky factor of the covariance (divisor m - 1) shrunk
    towards (tr C / d) I by a = d / (d + m)."""
    m, d = len(x), len(x[0])
    mu = [sum(r[j] for r in x) / m for j in range(d)]
    c = [[sum((r[i] - mu[i]) * (r[j] - mu[j]) for r in x) / (m - 1) for j in range(d)] for i in range(d)]
    a, tr = d / (d + m), sum(c[i][i] for i in range(d))
    s = [[(1 - a) * c[i][j] + (a * tr / d if i == j else 0) for j in range(d)] for i in range(d)]
    L = [[0.0] * d for _ in range(d)]
    for i in range(d):
        for j in range(i + 1):
            v = s[i][j] - sum(L[i][k] * L[j][k] for k in range(j))
            L[i][j] = math.sqrt(v) if i == j else v / L[j][j]
    return mu, L

def mahalanobis(g, x):
    mu, L = g
    y = []
    for i in range(len(x)):   # L y = x - mu
        y.append((x[i] - mu[i] - sum(L[i][k] * y[k] for k in range(i))) / L[i][i])
    return math.sqrt(sum(v * v for v in y))

def run(r):
    lines = [json.loads(l) for l in open(os.path.join(data, "datasets", r, "manifest.jsonl"))]
    emb = {}
    for f in os.listdir(os.path.join(data, "runs", r, "embeddings")):
        wnid, start = f[:-len(".safetensors")].rsplit("-", 1)
        for i, row in enumerate(tensors(os.path.join(data, "runs", r, "embeddings", f))["embeddings"]):
            emb["%s-%d" % (wnid, int(start) + i)] = row
    return {l["id"]: l for l in lines}, emb

m4, e4 = run(r4)
m1, e1 = run(r1)
assert m4.keys() == m1.keys() and len(m4) == 16, (len(m4), len(m1))
gauss = {}
moved = better = 0
for id_, a in sorted(m4.items()):
    b = m1[id_]
    assert a["caption"] == b["caption"] == "a photo of a %s" % a["name"], (a["caption"], b["caption"])
    assert a["candidates"] == 4 and 0 <= a["candidate"] < 4 and b["candidates"] == 1 and b["candidate"] == 0, (a, b)
    if a["class"] not in gauss:
        path = os.path.join(data, "stats", a["embedder"], "world", a["class"] + ".safetensors")
        gauss[a["class"]] = gaussian(tensors(path)["embeddings"])
    g = gauss[a["class"]]
    da, db = mahalanobis(g, e4[id_]), mahalanobis(g, e1[id_])
    # The distance each image records is the one of its own embedding.
    assert abs(da - a["reference_mahalanobis"]) < 1e-3 * max(1, da), (id_, da, a["reference_mahalanobis"])
    assert abs(db - b["reference_mahalanobis"]) < 1e-3 * max(1, db), (id_, db, b["reference_mahalanobis"])
    # Candidate 0 is the one-candidate run's image: when the filter kept it,
    # the choice among four is kept too and at least as unlikely.
    if b["kept"]:
        assert a["kept"], (id_, "candidate 0 passes the filter, the chosen one does not")
        assert da >= db - 1e-4, (id_, da, db)
    if a["candidate"] == 0:
        assert abs(da - db) < 1e-4 and a["seed"] == b["seed"], (id_, da, db)
    moved += a["candidate"] != 0
    better += da > db + 1e-4
kept4, kept1 = sum(a["kept"] for a in m4.values()), sum(b["kept"] for b in m1.values())
assert moved and better and 0 < kept1 < 16 and kept4 >= kept1, (moved, better, kept1, kept4)
print("low-density: %d of 16 images are another candidate than the first, %d further from their class; "
      "the filter kept %d of one candidate, %d of the choice among four" % (moved, better, kept1, kept4))
PY
ok "low-density keeps, of four generations, the least likely under the reference Gaussian among those the filter keeps"

# The oracle's captions name what the class rarely shows, not only its name.
grep -v -q '"caption":"a photo of a [a-z ]*"' "$D/datasets/$ro/manifest.jsonl" || fail "the oracle wrote plain captions"
expect 2 "strategy 'low-density-oracle' reads the embedded world's ground truth and runs only with generator 'world'" \
    submit --method shift --classes stingray --strategy low-density-oracle --generator diffusion
ok "low-density-oracle on the diffusion generator is refused, saying why"
