# The real-model path without downloads: a method run whose generator is a
# TorchScript diffusion pipeline (tiny modules with the contract's exact
# signatures, written by `sf-train toy-diffusion` from C++ with
# torch::jit::Module::define) and whose reference statistics come from an
# ImageNet-style folder (JPEG and PNG files, one unreadable file skipped and
# counted) goes through embed, captions, generate and filter to a dataset.
# The same seeds give the same images in a second run; a worker without a
# pipeline and a pipeline without a hook refuse clearly.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
D="$T/data"
"$BIN/sf-train" toy-diffusion --out "$T/diff" --vocab "$M/clip-world/vocab.json" \
    --merges "$M/clip-world/merges.txt" --latent >"$T/toy.out" 2>&1 || fail "toy-diffusion: $(cat "$T/toy.out")"
[ -s "$T/diff/sf-diffusion.json" ] || fail "toy-diffusion wrote no sf-diffusion.json"

# Reference folders: JPEG and PNG files (made by the fuzz corpus and the
# world), and one file that is no image at all, sorted among the first.
REF="$T/ref/mini"
for w in n01498041 n01534433; do
    mkdir -p "$REF/$w"
    i=0
    for f in "$SF_ROOT"/tests/fuzz/corpus/image/*.jpg; do
        cp "$f" "$REF/$w/c$i.JPEG"; i=$((i + 1))
    done
    echo "$w" | "$BIN/sfctl" world sheet --classes - --set base --n 1 --out "$REF/$w/d0.png" >/dev/null ||
        fail "world sheet"
    echo "$w" | "$BIN/sfctl" world sheet --classes - --set world-R --n 1 --out "$REF/$w/d1.png" >/dev/null ||
        fail "world sheet"
done
printf 'not an image' >"$REF/n01498041/b-broken.jpg"
nref=$(find "$REF/n01534433" -type f | wc -l)
[ "$nref" -ge 3 ] || fail "only $nref reference files were made"

# A fatal job failure is dead-lettered at once, its error kept in Redis.
wait_dead() {  # RUN PATTERN
    for _ in $(seq 1500); do R hgetall "sf:run:$1:dead" | grep -q "$2" && return 0; sleep 0.2; done
    fail "run $1: no dead job saying '$2': $(R hgetall "sf:run:$1:dead")"
}

start_redis
start_coordinator
WFLAGS=(--models-dir "$M" --data-dir "$D" --gpt2-vocab "$SF_ROOT/data/gpt2" --diffusion-dir "$T/diff"
        --reference-root "$T/ref")
start_workers 1 "${WFLAGS[@]}"

expect 2 "reference_source" "$BIN/sfctl" submit --method shift --classes stingray --reference ../etc
expect 2 "'policy'" "$BIN/sfctl" submit --method shift --classes stingray --policy /etc/passwd
expect 2 "'policy'" "$BIN/sfctl" submit --method shift --classes stingray --policy sft/../../x
ok "a reference source that is a path, and a policy outside models_dir, are refused"

args=(--method shift --strategy d3s --generator diffusion --reference mini --classes stingray,junco
      --captions-per-class 3 --images-per-caption 2 --reference-images 3 --diffusion-steps 4
      --guidance-scale 3 --seed 5 --finetune-images-per-class 0)
run=$(submit "${args[@]}") || fail submit
wait_state "$run" done 300
st=$("$BIN/sfctl" status "$run" --json)
for ph in embed captions generate filter manifest; do
    echo "$st" | grep -q "\"name\":\"$ph\"" || fail "phase $ph missing: $st"
done
[ "$(R hget sf:run:$run dead)" = 0 ] || fail "dead jobs: $(R hgetall sf:run:$run:dead)"
res=$(R hget sf:run:$run:results 0)
echo "$res" | grep -q '"unreadable":1' || fail "the unreadable reference file was not counted: $res"
echo "$res" | grep -q '"n":3' || fail "embed did not use 3 readable images: $res"
ok "reference statistics from an ImageNet-style folder (one unreadable file skipped and counted)"

python3 - "$D" "$run" "$T/diff/sf-diffusion.json" <<'PY' || fail "the dataset does not match the pipeline's images"
import json, os, struct, sys
data, run, conf = sys.argv[1:]
size = json.load(open(conf))["image_size"]
root = os.path.join(data, "datasets", run)
entries = [json.loads(l) for l in open(os.path.join(root, "manifest.jsonl"))]
assert len(entries) == 12, len(entries)
for e in entries:
    assert e["generator"] == "diffusion" and e["steps"] == 4, e
    png = os.path.join(data, "runs", run, "images", e["class"], e["id"].split("-")[1] + ".png")
    with open(png, "rb") as f:
        head = f.read(24)
    w, h = struct.unpack(">II", head[16:24])
    assert (w, h) == (size, size), (png, w, h, size)
    if e["kept"]:
        assert os.path.exists(os.path.join(root, e["file"])), e
PY
ok "generate ran the TorchScript pipeline and filter judged every image ($(wc -l <"$D/datasets/$run/manifest.jsonl") manifest entries)"

run2=$(submit "${args[@]}") || fail submit2
wait_state "$run2" done 300
for w in n01498041 n01534433; do
    for f in "$D/runs/$run/images/$w"/*.png; do
        cmp -s "$f" "$D/runs/$run2/images/$w/$(basename "$f")" || fail "image $w/$(basename "$f") differs between runs"
    done
done
ok "the same seeds give the same images"

run3=$(submit --method shift --strategy low-density --generator diffusion --classes stingray \
       --captions-per-class 1 --reference-images 3 --diffusion-steps 2 --finetune-images-per-class 0) || fail submit3
wait_dead "$run3" "needs a guidance module"
ok "low-density on a pipeline without a guidance hook fails, saying why"

# Without the hook, low-density is its choice among generations alone: three
# candidates of each image through the pipeline, one kept, its distance noted.
run5=$(submit --method shift --strategy low-density --generator diffusion --classes stingray --hook-scale 0 \
       --best-of-n 3 --captions-per-class 2 --reference-images 3 --diffusion-steps 2 --finetune-images-per-class 0) ||
    fail submit5
wait_state "$run5" done 300
python3 - "$D/datasets/$run5/manifest.jsonl" <<'PY' || fail "low-density on the pipeline"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1])]
assert len(entries) == 2, entries
for e in entries:
    assert e["generator"] == "diffusion" and e["caption"] == "a photo of a stingray", e
    assert e["candidates"] == 3 and 0 <= e["candidate"] < 3 and e["reference_mahalanobis"] > 0, e
PY
ok "low-density without the hook chooses among three pipeline generations per image"

"$BIN/sfctl" cancel "$run3" >/dev/null 2>&1
kill "${PIDS[@]}" 2>/dev/null
PIDS=()
sleep 1
start_workers 1 --models-dir "$M" --data-dir "$D" --gpt2-vocab "$SF_ROOT/data/gpt2"
run4=$(submit --method shift --strategy d3s --generator diffusion --classes stingray --captions-per-class 1 \
       --reference-images 3 --diffusion-steps 2 --finetune-images-per-class 0) || fail submit4
wait_dead "$run4" "needs the worker's diffusion_dir"
ok "a worker without diffusion_dir fails the job naming the setting"
