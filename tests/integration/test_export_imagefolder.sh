# The dataset as users load it: a small world run, `sfctl export`, then the
# exported folder opened with torchvision's own ImageFolder (Debian's
# python3-torchvision, not our code): its classes are exactly the run's
# wnids, sorted as ImageFolder sorts them; per class it holds as many images
# as the manifest keeps (and Redis counts); every kept manifest entry is one
# of its samples, under its class's index, and loads (PIL, RGB, timm's
# evaluation transform to a 3x224x224 tensor); and the folder holds nothing
# else.  The run's wnids come from data/imagenet_a_r_86.tsv, the image sizes
# from the PNG headers read here with struct.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
PY=${SF_TORCH_PYTHON:-/usr/bin/python3}
command -v "$PY" >/dev/null || skip "no $PY (set SF_TORCH_PYTHON to a python3 with torch and torchvision)"
for mod in torch:python3-torch torchvision:python3-torchvision PIL:python3-pil; do
    "$PY" -c "import ${mod%%:*}" 2>/dev/null ||
        skip "$PY cannot import ${mod%%:*}: install ${mod#*:} (make deps does), or set SF_TORCH_PYTHON"
done
M=$(test_models)
D="$T/data"
start_redis
start_coordinator
start_workers 1 --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2"
NAMES=stingray,junco,scorpion
# A threshold above the test CLIP's calibrated one (0.44), so that the filter
# drops some images of every class and keeps others (the class-text cosines
# of this seed lie between 0.48 and 0.62): kept counts then differ from the
# manifest's entry counts.
run=$(submit --method shift --classes "$NAMES" --strategy base --captions-per-class 3 --images-per-caption 2 \
      --reference-images 8 --finetune-images-per-class 0 --seed 5 --filter-threshold 0.58) || fail submit
wait_state "$run" done 120
# The per-class kept counts Redis holds (what sfctl status shows).
redis_kept=$(for w in $(R hkeys "sf:run:$run:classes" | sed -n 's/:kept$//p' | sort); do
    printf '%s:%s,' "$w" "$(R hget "sf:run:$run:classes" "$w:kept")"; done)
"$BIN/sfctl" export "$run" --to "$T/out" --data "$D" >"$T/export.out" 2>&1 || fail "export: $(cat "$T/export.out")"
ok "a world run of 3 classes exported ($(cat "$T/export.out"))"

"$PY" - "$T/out/$run" "$(pwd)/data/imagenet_a_r_86.tsv" "$NAMES" "$redis_kept" >"$T/check.out" 2>&1 <<'PY' ||
import collections, json, os, struct, sys
import torch
from PIL import Image
from torchvision import datasets, transforms

root, tsv, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
redis_kept = {w: int(n) for w, n in (x.split(":") for x in sys.argv[4].split(",") if x)}
wnid_of = {}
for line in open(tsv):
    if not line.startswith("#"):
        f = line.rstrip("\n").split("\t")
        wnid_of[f[2]] = f[1]
wnids = sorted(wnid_of[n] for n in names)

entries = [json.loads(l) for l in open(os.path.join(root, "manifest.jsonl"))]
assert {e["class"] for e in entries} == set(wnids), ({e["class"] for e in entries}, wnids)
kept = [e for e in entries if e["kept"]]
assert 0 < len(kept) < len(entries), "the filter kept %d of %d images: the test needs some of each" % (
    len(kept), len(entries))
assert all("file" not in e for e in entries if not e["kept"]), "a dropped entry names a file"

# timm's evaluation transform for ConvNeXt-Atto (crop_pct 0.95, bicubic),
# as a user evaluating Table 2 would load the folder.
tf = transforms.Compose([
    transforms.Resize(int(224 / 0.95), interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
])
ds = datasets.ImageFolder(root, transform=tf)

# Classes: the run's wnids, sorted, indexed in that order.
assert ds.classes == wnids, (ds.classes, wnids)
assert ds.class_to_idx == {w: i for i, w in enumerate(wnids)}, ds.class_to_idx

# Per-class counts as the manifest keeps them (every class, zeros included).
want = collections.Counter(ds.class_to_idx[e["class"]] for e in kept)
got = collections.Counter(t for _, t in ds.samples)
for i, w in enumerate(wnids):
    assert got[i] == want[i], "class %s: ImageFolder has %d images, the manifest keeps %d" % (w, got[i], want[i])
    assert redis_kept.get(w, 0) == got[i], "class %s: ImageFolder has %d images, Redis says %s kept" % (
        w, got[i], redis_kept.get(w))

# Every kept entry is a sample under its class's index; nothing else is.
samples = {os.path.relpath(p, root): t for p, t in ds.samples}
assert len(samples) == len(ds.samples) == len(kept), (len(samples), len(ds.samples), len(kept))
for e in kept:
    f = e["file"]
    assert f in samples, "manifest entry %s is not among ImageFolder's samples" % f
    assert samples[f] == ds.class_to_idx[e["class"]], (f, samples[f], e["class"])
    assert f.split("/")[0] == e["class"], (f, e["class"])

# Nothing else in the folder: every file is a sample or the manifest.
on_disk = set()
for d, _, files in os.walk(root):
    on_disk |= {os.path.relpath(os.path.join(d, f), root) for f in files}
extra = on_disk - set(samples) - {"manifest.jsonl"}
assert not extra, "files beside the dataset: %s" % sorted(extra)

# Every sample loads: through ImageFolder (its loader: PIL, RGB; then the
# transform) and by hand, the size as the PNG header gives it.
sizes = collections.Counter()
for i, (p, t) in enumerate(ds.samples):
    with open(p, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", p
    w, h = struct.unpack(">II", head[16:24])
    img = Image.open(p).convert("RGB")
    assert img.size == (w, h), (p, img.size, (w, h))
    raw = transforms.ToTensor()(img)
    assert raw.shape == (3, h, w) and 0 <= raw.min() and raw.max() <= 1, (p, raw.shape)
    x, y = ds[i]
    assert y == t and isinstance(x, torch.Tensor), (p, y, t)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and torch.isfinite(x).all(), (p, x.shape)
    sizes[(w, h)] += 1
loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
xs, ys = next(iter(loader))
assert xs.shape == (min(4, len(ds)), 3, 224, 224), xs.shape
print("%d images in %d classes (%s), %d of %d manifest entries kept; sizes %s" % (
    len(ds), len(ds.classes), " ".join("%s:%d" % (w, got[i]) for i, w in enumerate(wnids)), len(kept),
    len(entries), dict(sizes)))
PY
    fail "torchvision's ImageFolder disagrees with the manifest: $(cat "$T/check.out")"
ok "torchvision's ImageFolder loads the export: $(tail -1 "$T/check.out")"
