# The paper's three results on real-format models and data, without
# downloads: a run with the diffusion backend (toy TorchScript modules),
# timm-format classifier folders (ConvNeXt-Atto and ViT-Tiny layouts, random
# weights, written by tests/integration/timm_folder.py with Debian's torch,
# not by the project's writer) and small JPEG ImageNet, ImageNet-R and
# ImageNet-A folders goes embed -> captions -> generate -> filter -> classify
# -> manifest -> finetune -> evaluate -> summarize, and `sfctl report` shows
# Table 1, Table 2 and Fig. 6.  Table 2's counts are checked against the
# manifest's labels and Fig. 6's figures against the evaluations' hits.  A
# worker killed during a fine-tuning job: the next one resumes it from its
# checkpoint, and the weights equal an uninterrupted run's byte for byte.
# Bad input (an unknown architecture, a missing tensor, 999 classes, a test
# set with a folder that is no wnid, or without readable images) fails or
# skips that part, saying what is wrong.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
PY=${SF_TORCH_PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch, PIL' 2>/dev/null ||
    skip "$PY cannot import torch and PIL (make deps installs python3-torch and python3-torchvision)"
M=$(test_models)
D="$T/data"

# models_dir: the test models, and timm folders beside them.
MD="$T/models"
mkdir -p "$MD/timm"
for f in "$M"/*; do ln -s "$f" "$MD/$(basename "$f")"; done
tf() { "$PY" "$SF_ROOT/tests/integration/timm_folder.py" "$@" || fail "timm_folder.py $*"; }
tf "$MD/timm/convnext_atto" convnext_atto --size 32 --seed 1
tf "$MD/timm/vit_tiny" vit_tiny_patch16_224 --size 32 --seed 2
tf "$MD/timm/bad_arch" convnext_gigantic --size 32
tf "$MD/timm/no_tensor" convnext_atto --size 32 --drop stages.2.blocks.3.conv_dw.weight
tf "$MD/timm/classes999" convnext_atto --size 32 --classes 999
"$BIN/sf-train" toy-diffusion --out "$T/diff" --vocab "$M/clip-world/vocab.json" \
    --merges "$M/clip-world/merges.txt" --latent >"$T/toy.out" 2>&1 || fail "toy-diffusion: $(cat "$T/toy.out")"

# JPEG folders: the run's classes (stingray, junco) in every set, one more
# class in the test sets (their logits are restricted to their classes), a
# test set whose folder is no wnid, and one whose only files are unreadable.
REF="$T/ref"
"$PY" - "$REF" <<'PY' || fail "cannot write the JPEG folders"
import os, random, sys
from PIL import Image, ImageDraw
root = sys.argv[1]
rng = random.Random(7)
def jpegs(d, n):
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        w, h = rng.randint(40, 90), rng.randint(40, 90)
        im = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
        dr = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = rng.randint(0, w - 1), rng.randint(0, h - 1)
            dr.ellipse([x, y, x + rng.randint(5, 30), y + rng.randint(5, 30)], fill=tuple(rng.randint(0, 255) for _ in range(3)))
        im.save(os.path.join(d, "img%02d.JPEG" % i), quality=90)
run = ["n01498041", "n01534433"]
for w in run:
    jpegs(os.path.join(root, "imagenet-train", w), 4)
    jpegs(os.path.join(root, "imagenet-r", w), 3)
    jpegs(os.path.join(root, "imagenet-a", w), 2)
jpegs(os.path.join(root, "imagenet-r", "n01440764"), 2)
jpegs(os.path.join(root, "badset", "n01498041"), 1)
jpegs(os.path.join(root, "badset", "not-a-wnid"), 1)
for w in run:
    os.makedirs(os.path.join(root, "emptyset", w), exist_ok=True)
    open(os.path.join(root, "emptyset", w, "x.JPEG"), "w").write("not a jpeg")
PY

wait_dead() {  # RUN PATTERN
    for _ in $(seq 1500); do R hgetall "sf:run:$1:dead" | grep -q "$2" && return 0; sleep 0.2; done
    fail "run $1: no dead job saying '$2': $(R hgetall "sf:run:$1:dead")"
}

start_redis
start_coordinator --heartbeat-ms 200 --liveness 3
WFLAGS=(--models-dir "$MD" --data-dir "$D" --gpt2-vocab "$SF_ROOT/data/gpt2" --diffusion-dir "$T/diff"
        --reference-root "$REF")
start_workers 2 "${WFLAGS[@]}"

base=(--method shift --strategy d3s --generator diffusion --reference imagenet-train --classes stingray,junco
      --captions-per-class 2 --images-per-caption 2 --reference-images 4 --diffusion-steps 2 --seed 3
      --filter-threshold -1 --finetune-images-per-class 2 --finetune-batch 4 --finetune-seeds 2)
args=("${base[@]}" --classifiers timm/convnext_atto,timm/vit_tiny --finetune-steps 6)

expect 2 "classifier" "$BIN/sfctl" submit "${base[@]}" --classifiers ../etc
expect 2 "reference_source" "$BIN/sfctl" submit --method shift --classes stingray --classifiers timm/vit_tiny
expect 2 "named twice" "$BIN/sfctl" submit "${base[@]}" --classifiers timm/vit_tiny,timm/vit_tiny
ok "a classifier path outside models_dir, real classifiers on world references and a classifier twice are refused"

run=$(submit "${args[@]}") || fail submit
wait_state "$run" done 600
st=$("$BIN/sfctl" status "$run" --json)
for ph in embed captions generate filter classify manifest finetune evaluate summarize; do
    echo "$st" | grep -q "\"name\":\"$ph\"" || fail "phase $ph missing: $st"
done
[ "$(R hget "sf:run:$run" dead)" = 0 ] || fail "dead jobs: $(R hgetall "sf:run:$run:dead")"

"$PY" - "$D" "$run" <<'PY' || fail "Table 2 and Fig. 6's files do not agree with their sources"
import glob, json, os, sys
data, run = sys.argv[1:]
ds = os.path.join(data, "datasets", run)
names = ["timm/convnext_atto", "timm/vit_tiny"]
lines = [json.loads(l) for l in open(os.path.join(ds, "manifest.jsonl"))]
kept = [e for e in lines if e["kept"]]
assert len(lines) == 8 and len(kept) == 8, (len(lines), len(kept))
for e in kept:
    for n in names:
        lab = e["classifiers"][n]
        assert len(lab["label"]) == 9 and lab["label"].startswith("n"), lab
        assert lab["correct"] == (lab["label"] == e["class"]), (e["class"], lab)
        assert lab["run_classes_label"] in ("n01498041", "n01534433"), lab
        assert lab["run_classes_correct"] == (lab["run_classes_label"] == e["class"]), lab
for w in ("n01498041", "n01534433"):
    c = json.load(open(os.path.join(ds, "classify", w + ".json")))
    mine = [e for e in kept if e["class"] == w]
    assert c["generated_images"] == len(mine) and c["reference_images"] == 4, c
    for n in names:
        cc = c["classifiers"][n]
        assert cc["generated_correct"] == sum(e["classifiers"][n]["correct"] for e in mine), (n, cc)
        assert cc["generated_correct_run_classes"] == sum(e["classifiers"][n]["run_classes_correct"] for e in mine)
        assert 0 <= cc["reference_correct"] <= cc["reference_correct_run_classes"] <= 4, cc
ft = json.load(open(os.path.join(ds, "finetune.json")))
assert ft["classifiers"] == names and ft["test_sets"] == ["imagenet-r", "imagenet-a"], ft
assert ft["seeds"] == 2 and ft["steps"] == 6 and ft["batch"] == 4, ft
for n in names:
    for s, per in (("imagenet-r", 3), ("imagenet-a", 2)):
        o = ft[n][s]
        assert o["images"] == 2 * per and o["classes"] == 2, o
        # The figures again from the evaluations' hits.
        hits = {}
        for w in ("n01498041", "n01534433"):
            ev = json.load(open(os.path.join(data, "runs", run, "eval", w + ".json")))
            for k, v in ev["sets"][s]["hits"][n].items():
                assert len(v) == per, (w, s, k, v)
                hits[k] = hits.get(k, "") + v
        acc = lambda h: 100.0 * h.count("1") / len(h)
        assert abs(o["original_run_classes"] - acc(hits["original"])) < 1e-9, (o, hits)
        ctl = sum(acc(hits["s%d-control" % i]) for i in range(2)) / 2
        gen = sum(acc(hits["s%d-with_generated" % i]) for i in range(2)) / 2
        assert abs(o["base_only_run_classes"] - ctl) < 1e-9 and abs(o["with_generated_run_classes"] - gen) < 1e-9, o
        assert o["gain_run_classes_se"] >= 0, o
# Every fine-tuning run left its weights and no checkpoint behind.
ws = sorted(os.path.basename(p) for p in glob.glob(os.path.join(data, "runs", run, "finetune", "*")))
assert ws == sorted("c%d-s%d-%s.safetensors" % (c, s, v) for c in range(2) for s in range(2)
                    for v in ("control", "with_generated")), ws
PY
ok "Table 2's labels and counts agree with the manifest, Fig. 6's figures with the test sets' hits"

"$BIN/sfctl" report "$run" --out "$T/report" --data "$D" >"$T/report.out" 2>&1 || fail "report: $(cat "$T/report.out")"
md="$T/report/report.md"
grep -q "^### Table 1" "$md" || fail "no Table 1 in the report"
grep -q "^### Table 2: real classifiers on the kept images" "$md" || fail "no real Table 2 in the report"
grep -q "| d3s | $run | timm/convnext_atto | [0-9.]*% (8) | " "$md" ||
    grep -q "| d3s | $run | timm/convnext_atto | [0-9.]*% (8) |" "$md" || fail "Table 2 has no convnext row: $(grep -A6 'real classifiers' "$md")"
for n in timm/convnext_atto timm/vit_tiny; do
    for s in imagenet-r imagenet-a; do
        grep -q "| d3s | $run | $n | $s | " "$md" || fail "Fig. 6 has no row for $n on $s"
    done
done
grep -q '"table2_real"' "$T/report/report.json" || fail "report.json has no table2_real"
ok "the report shows Table 1, Table 2 with the timm classifiers and Fig. 6 on ImageNet-R and -A"

# A worker killed during a fine-tuning job: the job goes back to the queue
# when the worker falls silent, and the next worker resumes from the last
# checkpoint.  Alone, so that the victim holds the job.
kill "${PIDS[@]}" 2>/dev/null
PIDS=()
for _ in $(seq 100); do [ "$("$BIN/sfctl" workers --json | grep -o '"id"' | wc -l)" = 0 ] && break; sleep 0.1; done
long=("${base[@]}" --classifiers timm/convnext_atto --finetune-steps 200 --finetune-seeds 1 --seed 4)
start_workers 1 "${WFLAGS[@]}"
run2=$(submit "${long[@]}") || fail submit2
ck=""
for _ in $(seq 3000); do
    ck=$(ls "$D/runs/$run2/finetune/"*.ckpt.json 2>/dev/null | head -1)
    [ -n "$ck" ] && break
    sleep 0.1
done
[ -n "$ck" ] || fail "no checkpoint appeared: $(tail -5 "$T/worker-0.log")"
kill -9 "${PIDS[0]}"
PIDS=()
step=$(grep -o '"step":[0-9]*' "$ck" | cut -d: -f2)
[ "$(R hget "sf:run:$run2" state)" = running ] || fail "the run ended before the kill"
start_workers 1 "${WFLAGS[@]}"
wait_state "$run2" done 600
grep -q "resuming from the checkpoint of step" "$T"/worker-*.log || fail "no worker said it resumed"
R hvals "sf:run:$run2:results" | grep '"resumed_from_step":[1-9]' | grep -q '"variant"' ||
    fail "no fine-tuning result says it resumed: $(R hvals "sf:run:$run2:results" | grep variant)"
# The same run uninterrupted gives the same weights.
run3=$(submit "${long[@]}") || fail submit3
wait_state "$run3" done 600
for f in c0-s0-control c0-s0-with_generated; do
    cmp -s "$D/runs/$run2/finetune/$f.safetensors" "$D/runs/$run3/finetune/$f.safetensors" ||
        fail "$f: the resumed fine-tune's weights differ from the uninterrupted one's"
done
cmp -s "$D/datasets/$run2/finetune.json" "$D/datasets/$run3/finetune.json" || fail "finetune.json differs after the resume"
ok "a worker killed at a checkpoint (step ${step:-?} of 200): the next resumed, and its weights equal an uninterrupted run's"

# Bad input: each fails its part, naming what is wrong.
one=("${base[@]}" --finetune-steps 2 --finetune-seeds 1)
r=$(submit "${one[@]}" --classifiers timm/bad_arch) || fail submit
wait_dead "$r" "convnext_gigantic"
r=$(submit "${one[@]}" --classifiers timm/no_tensor) || fail submit
wait_dead "$r" "stages.2.blocks.3.conv_dw.weight"
r=$(submit "${one[@]}" --classifiers timm/classes999) || fail submit
wait_dead "$r" "999"
r=$(submit "${one[@]}" --classifiers timm/vit_tiny --eval-sets imagenet-r,badset) || fail submit
wait_dead "$r" "not-a-wnid"
ok "an unknown architecture, a missing tensor, 999 classes and a test-set folder that is no wnid are named"
r=$(submit "${one[@]}" --classifiers timm/vit_tiny --eval-sets imagenet-r,emptyset) || fail submit
wait_state "$r" done 300
grep -q '"emptyset":"no readable image' "$D/datasets/$r/finetune.json" || fail "the unreadable test set was not noted"
"$BIN/sfctl" report "$r" --out "$T/report2" --data "$D" >/dev/null 2>&1 || fail "report of the run without emptyset"
grep -q "test set emptyset left out: no readable image" "$T/report2/report.md" || fail "the report does not say emptyset was left out"
ok "a test set without readable images is left out of Fig. 6, and the report says why"
