# One command writes the report for the strategies (ppo, sft, d3s,
# low-density, base, best-of-n) on the same classes, sft twice (seeds 3 and
# 4); the page opens in headless Chromium without errors, with the tables,
# plots and an image grid; the Markdown and JSON hold the same tables.  The
# strategies over runs (mean, sample s.d.), the caption diversity and the
# held-out reference row are computed again here, in Python, from the files
# the runs wrote.  Tiny settings: behaviour, not quality.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
D="$T/data"
start_redis
start_coordinator
start_learner --models-dir "$M"
start_workers 2 --learner "$LEP" --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2"
C=stingray,junco,scorpion
ANY_SEED=(--method shift --classes "$C" --captions-per-class 4 --reference-images 24
          --finetune-images-per-class 2 --finetune-steps 2)
COMMON=("${ANY_SEED[@]}" --seed 3)
runs=()
runs+=("$(submit "${COMMON[@]}" --ppo-updates 3 --ppo batch_size=8 --ppo mini_batch_size=4 --rollouts-per-job 4)")
for s in sft d3s low-density base; do runs+=("$(submit "${COMMON[@]}" --strategy "$s")"); done
runs+=("$(submit "${COMMON[@]}" --strategy best-of-n --best-of-n 4)")
b1=$(submit "${COMMON[@]}" --strategy best-of-n --best-of-n 1)
# A second run of sft with another seed: the strategies table's mean and s.d.
sft4=$(submit "${ANY_SEED[@]}" --seed 4 --strategy sft)
for r in "${runs[@]}" "$b1" "$sft4"; do wait_state "$r" done 300; done
ok "six strategies ran on the same classes, sft twice: ${runs[*]} $sft4"

# best-of-n keeps the best of the SFT policy's samples: with one sample per
# caption it is the sft strategy itself, caption for caption; with four it
# writes as many captions, not all the same as sft's.
python3 - "$D/runs" "${runs[1]}" "$b1" "${runs[5]}" <<'PY' || fail "best-of-n captions"
import json, os, sys
root, sft, b1, b4 = sys.argv[1:]
def caps(run):
    d = os.path.join(root, run, "captions")
    return {f: [json.loads(l)["caption"] for l in open(os.path.join(d, f))] for f in sorted(os.listdir(d))}
s, one, four = caps(sft), caps(b1), caps(b4)
assert s == one, (s, one)
assert set(four) == set(s) and all(len(four[f]) == len(s[f]) for f in s), (four, s)
assert four != s, "best of four samples is sft's first sample for every caption"
PY
ok "best-of-n with one sample is sft caption for caption; with four it picks other captions"

expect 2 "usage" "$BIN/sfctl" report
expect 1 "no manifest for run r99" "$BIN/sfctl" report r99 --out "$T/bad" --data "$D"
"$BIN/sfctl" report "${runs[0]}" --compare "${runs[@]:1}" "$sft4" --out "$T/rep" --data "$D" \
    --redis "unix:$T/redis.sock" >"$T/report.out" 2>&1 || fail "report: $(cat "$T/report.out")"
for s in ppo sft d3s low-density base best-of-n; do
    grep -q "^| $s [|(]" "$T/rep/report.md" || fail "report.md has no row for $s: $(cat "$T/rep/report.md")"
done
python3 - "$T/rep/report.json" <<'PY' || fail "report.json"
import json, sys
r = json.load(open(sys.argv[1]))
rows = r["table1"]
assert [x["strategy"] for x in rows] == ["reference images (held out)", "ppo", "sft", "d3s", "low-density", "base",
                                         "best-of-n", "sft"], rows
for x in rows:
    assert 0 < x["similarity_x100"] <= 100 and x["mahalanobis"] > 0, x
assert "convnext_accuracy" not in rows[1] or 0 <= rows[1]["convnext_accuracy"] <= 100
assert len(r["ppo_curve"]["mean_score"]) == 3, r["ppo_curve"]
PY
ok "report.md and report.json hold Table 1 for every strategy and the PPO curve"

# The filter table and class fidelity, counted again here from the manifests.
python3 - "$T/rep/report.json" "$D" "${runs[@]}" <<'PY' || fail "the filter table does not match the manifests"
import json, os, sys
r = json.load(open(sys.argv[1]))
rows = {x["run"]: x for x in r["filter"]}
t2 = {x["run"]: x for x in r["table2"]}
base = [x for x in r["table2"] if x["strategy"] == "base"]
for run in sys.argv[3:]:
    es = [json.loads(l) for l in open(os.path.join(sys.argv[2], "datasets", run, "manifest.jsonl"))]
    # The class the generator drew (null: none), not its outcome: a caption
    # naming another class is drawn "ok".
    fail = [e for e in es if e["drawn_class"] != e["class"]]
    kept = [e for e in es if e["kept"]]
    x = rows[run]
    assert x["generated"] == len(es) and x["kept"] == len(kept), (x, len(es), len(kept))
    assert x["failures"] == len(fail), (x, len(fail))
    assert x["failures_rejected"] == sum(not e["kept"] for e in fail), x
    good_kept = sum(e["drawn_class"] == e["class"] for e in kept)
    assert x["target_class_kept"] == good_kept, (x, good_kept)
    if kept:
        assert abs(x["class_fidelity"] - good_kept / len(kept)) < 1e-9, x
    assert abs(x["threshold"] - es[0]["filter_threshold"]) < 1e-9, x
    ok = [e for e in kept if e["drawn_class"] == e["class"]]
    if ok and "convnext_target_class_accuracy" in t2[run]:
        want = 100 * sum(e["convnext_correct"] for e in ok) / len(ok)
        assert abs(t2[run]["convnext_target_class_accuracy"] - want) < 1e-9, (t2[run], want)
    if "convnext_accuracy" in t2[run] and "convnext_accuracy" in base[0]:
        assert abs(t2[run]["convnext_drop"] - (base[0]["convnext_accuracy"] - t2[run]["convnext_accuracy"])) < 1e-9
PY
grep -q "^### The filter and class fidelity" "$T/rep/report.md" || fail "report.md has no filter table"
ok "the filter table (generated, kept, failures, recall, class fidelity) and Table 2's drops match the manifests"

# The strategies over runs: sft's two runs as mean and sample s.d. (n − 1),
# from the manifests and finetune.json where the figure is read off them
# (kept share, class fidelity, accuracies, drops, gains), from Table 1's runs
# for the similarity and Mahalanobis; a strategy of one run has no s.d.
python3 - "$T/rep/report.json" "$D" "${runs[1]}" "$sft4" <<'PY' || fail "the strategies table does not match the runs"
import json, math, os, statistics, sys
r = json.load(open(sys.argv[1]))
data, runs = sys.argv[2], sys.argv[3:]
st = {x["strategy"]: x for x in r["strategies"]}
assert [x["strategy"] for x in r["strategies"]] == ["ppo", "sft", "d3s", "low-density", "base", "best-of-n"], \
    r["strategies"]
sft = st["sft"]
assert sft["runs"] == runs and sft["n_runs"] == 2, sft
def manifest(run):
    return [json.loads(l) for l in open(os.path.join(data, "datasets", run, "manifest.jsonl"))]
def accuracy(run, key):
    kept = [e for e in manifest(run) if e["kept"]]
    return 100 * sum(e[key] for e in kept) / len(kept)
def base_accuracy(key):  # the mean over the base runs
    return statistics.mean(accuracy(run, key) for run in st["base"]["runs"])
per_run = {k: [] for k in ("kept_share", "class_fidelity", "convnext_accuracy", "vit_accuracy", "convnext_drop",
                           "vit_drop", "convnext_world_R_gain_run_classes", "vit_world_A_gain_run_classes",
                           "similarity_x100", "mahalanobis")}
t1 = {x.get("run"): x for x in r["table1"]}
for run in runs:
    es = manifest(run)
    kept = [e for e in es if e["kept"]]
    per_run["kept_share"].append(len(kept) / len(es))
    per_run["class_fidelity"].append(sum(e["drawn_class"] == e["class"] for e in kept) / len(kept))
    for m in ("convnext", "vit"):
        acc = accuracy(run, m + "_correct")
        per_run[m + "_accuracy"].append(acc)
        per_run[m + "_drop"].append(base_accuracy(m + "_correct") - acc)
    ft = json.load(open(os.path.join(data, "datasets", run, "finetune.json")))
    for m, s in (("convnext", "world_R"), ("vit", "world_A")):
        g = ft[m][s]
        per_run["%s_%s_gain_run_classes" % (m, s)].append(g["with_generated_run_classes"] - g["base_only_run_classes"])
    per_run["similarity_x100"].append(t1[run]["similarity_x100"])
    per_run["mahalanobis"].append(t1[run]["mahalanobis"])
assert per_run["similarity_x100"][0] != per_run["similarity_x100"][1], "the two sft runs are the same"
for k, v in per_run.items():
    got = sft[k]
    assert got["n"] == 2 and math.isclose(got["mean"], statistics.mean(v), rel_tol=1e-9, abs_tol=1e-9), (k, got, v)
    assert math.isclose(got["sd"], statistics.stdev(v), rel_tol=1e-9, abs_tol=1e-9), (k, got, v)
    if "gain" in k:
        assert math.isclose(got["se"], statistics.stdev(v) / math.sqrt(2), rel_tol=1e-9, abs_tol=1e-9), (k, got)
for s in ("ppo", "d3s", "base"):
    assert st[s]["n_runs"] == 1 and st[s]["similarity_x100"]["sd"] is None, st[s]
PY
grep -q "^### Strategies over runs" "$T/rep/report.md" || fail "report.md has no strategies table"
grep -q "^| sft | 2 | " "$T/rep/report.md" || fail "report.md's strategies table has no row for sft's two runs"
grep -q "^| ppo | 1 | [0-9.]* ± — |" "$T/rep/report.md" || fail "a strategy of one run shows an s.d. in report.md"
ok "the strategies over runs: sft's two runs as mean and sample s.d., as the manifests and finetune.json give them"

# Caption diversity: a run's captions are one per class and caption index;
# the distinct share, and the entropy of the attribute values the world's
# parser (sf-world parse, as sfctl world parse) reads in them.
python3 - "$T/rep/report.json" "$D" "$BIN/sf-world" "${runs[0]}" "${runs[1]}" "$sft4" <<'PY' || fail "caption diversity"
import collections, json, math, os, subprocess, sys
r = json.load(open(sys.argv[1]))
data, world = sys.argv[2], sys.argv[3]
div = {x["run"]: x for x in r["diversity"]["runs"]}
def captions(run):
    caps = {}
    for l in open(os.path.join(data, "datasets", run, "manifest.jsonl")):
        e = json.loads(l)
        caps.setdefault((e["class"], e["caption_index"]), e["caption"])
    return caps
for run in sys.argv[4:]:
    caps = captions(run)
    x = div[run]
    assert x["captions"] == len(caps) and x["distinct_captions"] == len(set(caps.values())), (x, len(caps))
    assert math.isclose(x["distinct_share"], len(set(caps.values())) / len(caps)), x
# The entropy of one run (ppo), its captions read by sf-world one by one.
caps = captions(sys.argv[4])
named = collections.Counter()
for (wnid, _), text in caps.items():
    out = subprocess.run([world, "parse", "--classes", "-", text], input=wnid + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    named.update(l for l in out[1:] if not l.startswith("words:"))
total = sum(named.values())
h = -sum(n / total * math.log2(n / total) for n in named.values()) if total else 0
x = div[sys.argv[4]]
assert x["named"] == dict(named), (x["named"], named)
assert math.isclose(x["entropy_bits"], h, abs_tol=1e-9), (x, h)
assert math.isclose(x["named_per_caption"], total / len(caps)), (x, total)
sft = [s for s in r["diversity"]["strategies"] if s["strategy"] == "sft"][0]
shares = [div[run]["distinct_share"] for run in sys.argv[5:]]
assert sft["n_runs"] == 2 and math.isclose(sft["distinct_share"]["mean"], sum(shares) / 2), sft
PY
grep -q "^### Caption diversity" "$T/rep/report.md" || fail "report.md has no caption diversity table"
ok "caption diversity: captions, distinct share and the entropy of the named attribute values match the manifests"

# Table 1's reference row is held out: each reference image against the mean
# of the other reference images of its class (the reference embeddings from
# the statistics files, read here with struct).
held=$(python3 - "$T/rep/report.json" "$D" "${runs[0]}" 2>&1 <<'PY'
import json, math, os, sys
r = json.load(open(sys.argv[1]))
data, run = sys.argv[2], sys.argv[3]
from safetensors_read import tensors
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
es = [json.loads(l) for l in open(os.path.join(data, "datasets", run, "manifest.jsonl"))]
classes = list(dict.fromkeys(e["class"] for e in es))
held, insample = [], []
for wnid in classes:
    t = tensors(os.path.join(data, "stats", es[0]["embedder"], "world", wnid + ".safetensors"))
    x = t["embeddings"]
    assert len(x) == 24, len(x)
    total = [sum(col) for col in zip(*x)]
    held.append(sum(cos(xi, [s - v for s, v in zip(total, xi)]) for xi in x) / len(x))
    insample.append(sum(cos(xi, t["mean"][0]) for xi in x) / len(x))
ref = r["table1"][0]
assert ref["strategy"] == "reference images (held out)", ref
want = 100 * sum(held) / len(held)
assert abs(ref["similarity_x100"] - want) < 1e-3, (ref, want)
assert abs(ref["in_sample_similarity_x100"] - 100 * sum(insample) / len(insample)) < 1e-3, ref
assert ref["similarity_x100"] < ref["in_sample_similarity_x100"], ref
assert ref["mahalanobis"] > ref["in_sample_mahalanobis"], ref
base = [x for x in r["table1"] if x["strategy"] == "base"][0]
print("similarity ×100 %.2f held out, %.2f in sample; Mahalanobis %.2f held out, %.2f in sample, %.2f for the base "
      "run's images" % (ref["similarity_x100"], ref["in_sample_similarity_x100"], ref["mahalanobis"],
                        ref["in_sample_mahalanobis"], base["mahalanobis"]))
PY
) || fail "the held-out reference row: $held"
grep -q "^| reference images (held out) | — | " "$T/rep/report.md" || fail "report.md's reference row is not held out"
ok "Table 1's reference row is held out (leave-one-out class means), as the reference embeddings give it: $held"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || fail "chromium is not installed (make deps installs it)"
HOME="$T" timeout 120 "$CHROME" --headless=new --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
    --screenshot="$T/shot.png" --window-size=1280,2400 "file://$T/rep/report.html" >"$T/chrome.log" 2>&1
[ -s "$T/shot.png" ] || fail "no screenshot: $(tail -5 "$T/chrome.log")"
! grep -E "CONSOLE|Uncaught|Failed to load" "$T/chrome.log" || fail "the page logged errors"
HOME="$T" timeout 120 "$CHROME" --headless=new --no-sandbox --disable-gpu --dump-dom "file://$T/rep/report.html" \
    >"$T/dom.html" 2>/dev/null
for id in table1 table2 filter fig4 fig6 strategies diversity fig-entropy fig-distinct grid; do
    grep -q "id=\"$id\"" "$T/dom.html" || fail "rendered page lacks #$id"
done
grep -q "<polyline" "$T/dom.html" || fail "no plot in the page"
grep -q "<img[^>]*src=\"data:image/png;base64," "$T/dom.html" || fail "no image in the grid"
grep -q "<figcaption>[^<]*<br><b[^>]*>drew " "$T/dom.html" || fail "the grid's images carry no caption and drawn class"
ok "the page renders in headless Chromium with tables, plots and image grids ($(stat -c %s "$T/shot.png") byte screenshot)"
