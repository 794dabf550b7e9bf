# DeepFloyd IF's cascade without downloads: a method run whose generator is
# a TorchScript IF pipeline (a T5 spiece.model trained here, a toy T5
# encoder, stage I at 64x64 with IF's DDPM scheduler, learned variance and
# dynamic thresholding, stage II to 256x256 on the noised upscaled image;
# tiny modules with the contract's exact signatures written by `sf-train
# toy-diffusion --if`) goes through captions, generate and filter to a
# dataset of 256x256 PNGs, kept and dropped alike.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
/usr/bin/python3 -c 'import sentencepiece' 2>/dev/null ||
    skip "/usr/bin/python3 cannot import sentencepiece (Debian's python3-sentencepiece) to train a spiece.model"
M=$(test_models)
D="$T/data"

# A small T5-shaped unigram model (pad 0, </s> 1, <unk> 2), as the
# SentencePiece tests train it.
/usr/bin/python3 "$SF_ROOT/tools/numerics/spm_ref.py" "$T/spm" >"$T/spm.out" 2>&1 ||
    fail "spm_ref.py: $(tail -5 "$T/spm.out")"
expect 2 "usage" "$BIN/sf-train" toy-diffusion --out "$T/x" --if
expect 2 "usage" "$BIN/sf-train" toy-diffusion --out "$T/x" --if --spm "$T/spm/t5.model" --latent
"$BIN/sf-train" toy-diffusion --out "$T/if" --if --spm "$T/spm/t5.model" >"$T/toy.out" 2>&1 ||
    fail "toy-diffusion --if: $(cat "$T/toy.out")"
python3 - "$T/if/sf-diffusion.json" <<'PY' || fail "the toy IF pipeline's JSON is not IF's shape"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["tokenizer"] == {"kind": "t5", "model": "spiece.model", "context": 77}, j["tokenizer"]
assert (j["channels"], j["sample_size"], j["image_size"]) == (3, 64, 256), j
for s, top in ((j["schedule"], 1.5), (j["upscaler"]["schedule"], 1.0)):
    assert s["sampler"] == "ddpm" and s["variance_type"] == "learned_range", s
    assert s["beta_schedule"] == "squaredcos_cap_v2" and s["thresholding"] is True, s
    assert s["dynamic_thresholding_ratio"] == 0.95 and s["sample_max_value"] == top, s
assert j["upscaler"]["sample_size"] == 256 and j["upscaler"]["noise_level"] == 250, j["upscaler"]
PY
ok "sf-train toy-diffusion --if writes IF's cascade (t5 tokenizer, DDPM schedulers, an upscaler to 256)"

start_redis
start_coordinator
start_workers 1 --models-dir "$M" --data-dir "$D" --gpt2-vocab "$SF_ROOT/data/gpt2" --diffusion-dir "$T/if"

args=(--method shift --strategy d3s --generator diffusion --classes stingray,junco --captions-per-class 2
      --images-per-caption 1 --reference-images 3 --diffusion-steps 3 --guidance-scale 3 --seed 5
      --finetune-images-per-class 0)
run=$(submit "${args[@]}") || fail submit
wait_state "$run" done 600
st=$("$BIN/sfctl" status "$run" --json)
for ph in captions generate filter manifest; do
    echo "$st" | grep -q "\"name\":\"$ph\"" || fail "phase $ph missing: $st"
done
[ "$(R hget sf:run:$run dead)" = 0 ] || fail "dead jobs: $(R hgetall sf:run:$run:dead)"

python3 - "$D" "$run" <<'PY' || fail "the dataset does not hold the cascade's 256x256 images"
import json, os, struct, sys
data, run = sys.argv[1:]
root = os.path.join(data, "datasets", run)
entries = [json.loads(l) for l in open(os.path.join(root, "manifest.jsonl"))]
assert len(entries) == 4, len(entries)

def size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])

kept = 0
for e in entries:
    assert e["generator"] == "diffusion" and e["steps"] == 3 and e["guidance_scale"] == 3, e
    # Stage II's settings, from the pipeline's defaults, are recorded too.
    assert e["upscaler_steps"] == 4 and e["upscaler_guidance_scale"] == 2 and e["noise_level"] == 250, e
    assert isinstance(e["kept"], bool), e
    png = os.path.join(data, "runs", run, "images", e["class"], e["id"].split("-")[1] + ".png")
    assert size(png) == (256, 256), (png, size(png))
    if e["kept"]:
        kept += 1
        assert size(os.path.join(root, e["file"])) == (256, 256), e
print(f"{kept} kept, {len(entries) - kept} dropped")
PY
ok "generate ran the IF cascade and filter judged every 256x256 image ($(wc -l <"$D/datasets/$run/manifest.jsonl") manifest entries)"
