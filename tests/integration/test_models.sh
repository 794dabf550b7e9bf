# The shipped world models: `make models`'s check (tools/models.py) passes on
# the files as committed, changes nothing the second time, and names the file
# and the way back for a corrupted, truncated or missing file or manifest;
# sf-train is deterministic (two trainings of every model at a tiny scale are
# equal bit for bit, and `tools/models.py compare` says so) and the comparison
# reports a difference when there is one.
. "$(dirname "$0")/lib.sh"
ROOT=${SF_ROOT:-$(pwd)}
MP="$ROOT/tools/models.py"
[ -f "$ROOT/models/MANIFEST.json" ] || fail "models/MANIFEST.json is not in the checkout"

# The shipped files, as committed, pass; quality.json is written once.
mkdir -p "$T/m/clip-world" "$T/m/instruct-world"
python3 - "$ROOT/models" "$T/m" <<'PY' || fail "cannot copy the shipped models"
import json, shutil, sys, os
m = json.load(open(os.path.join(sys.argv[1], "MANIFEST.json")))
for e in m["files"]:
    shutil.copy(os.path.join(sys.argv[1], e["path"]), os.path.join(sys.argv[2], e["path"]))
shutil.copy(os.path.join(sys.argv[1], "MANIFEST.json"), sys.argv[2])
PY
"$MP" check "$T/m" >"$T/c1" 2>&1 || fail "the shipped models fail their own manifest: $(cat "$T/c1")"
grep -q "sha256 checked; quality figures in" "$T/c1" || fail "first check: $(cat "$T/c1")"
python3 -c 'import json,sys; q=json.load(open(sys.argv[1])); assert q["clip"]["embed_dim"] >= 128, q' \
    "$T/m/quality.json" || fail "quality.json from the manifest: $(cat "$T/m/quality.json")"
before=$(stat -c %Y.%s "$T/m/quality.json")
sleep 1
"$MP" check "$T/m" >"$T/c2" 2>&1 || fail "second check: $(cat "$T/c2")"
grep -q "up to date" "$T/c2" || fail "a second check is not a no-op: $(cat "$T/c2")"
[ "$(stat -c %Y.%s "$T/m/quality.json")" = "$before" ] || fail "a second check rewrote quality.json"
ok "the shipped models match their manifest, and a second check does nothing"

# Damage, one kind at a time, each restored after.
bad() {  # WHAT  EXPECTED-TEXT…
    local what=$1
    shift
    "$MP" check "$T/m" >"$T/out" 2>&1 && fail "$what: the check passed"
    for e in "$@"; do grep -q -- "$e" "$T/out" || fail "$what: no \"$e\" in: $(cat "$T/out")"; done
}
f="$T/m/convnext-world.safetensors"
cp "$f" "$T/keep"
printf '\x01' | dd of="$f" bs=1 seek=4000 count=1 conv=notrunc 2>/dev/null
bad "a flipped byte" "convnext-world.safetensors does not match its sha256" "git checkout -- models/" "make models-train"
cp "$T/keep" "$f"
head -c 1000 "$T/keep" >"$f"
bad "a truncated file" "convnext-world.safetensors has 1000 bytes"
rm "$f"
bad "a missing file" "convnext-world.safetensors is missing"
cp "$T/keep" "$f"
mv "$T/m/MANIFEST.json" "$T/man"
bad "no manifest" "MANIFEST.json is missing" "make models-train"
echo '{"files": [' >"$T/m/MANIFEST.json"
bad "a broken manifest" "not a readable manifest"
mv "$T/man" "$T/m/MANIFEST.json"
"$MP" check "$T/m" >"$T/c3" 2>&1 || fail "restored: $(cat "$T/c3")"
ok "a flipped byte, a truncated or missing file and a missing or broken manifest are named, with the way back"

# Determinism: every model twice at a tiny scale, compared bit for bit.
if [ ! -x "$BIN/sf-train" ]; then
    skip_part "the determinism check: built without libtorch (make NO_TORCH=1)"
    exit 0
fi
for d in a b; do
    "$BIN/sf-train" all --out "$T/$d" --scale 0.004 >"$T/$d.log" 2>&1 || fail "sf-train $d: $(tail -5 "$T/$d.log")"
    "$MP" manifest "$T/$d" --command "sf-train all --scale 0.004" --train-s 0 --scale 0.004 >/dev/null ||
        fail "manifest $d"
done
"$MP" compare "$T/a" "$T/b" >"$T/cmp" 2>&1 || fail "two trainings differ: $(cat "$T/cmp")"
[ "$(grep -c "bit-exact" "$T/cmp")" = 10 ] || fail "not every file compared: $(cat "$T/cmp")"
ok "two trainings of every model are equal bit for bit"
# A retraining that differs is reported, with the tensor and by how much.
python3 - "$T/b/vit-world.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
(n,) = struct.unpack("<Q", d[:8])
h = json.loads(d[8:8 + n])
k = sorted(x for x in h if x != "__metadata__")[0]
b = 8 + n + h[k]["data_offsets"][0]
struct.pack_into("<f", d, b, struct.unpack_from("<f", d, b)[0] + 0.5)
open(p, "wb").write(bytes(d))
PY
"$MP" manifest "$T/b" --command x --train-s 0 --scale 0.004 >/dev/null || fail "manifest b"
rc=0
"$MP" compare "$T/a" "$T/b" >"$T/cmp2" 2>&1 || rc=$?
[ $rc = 3 ] || fail "compare did not report a difference (exit $rc): $(cat "$T/cmp2")"
grep -q "vit-world.safetensors .*differs: largest |difference| 0.5" "$T/cmp2" || fail "no tensor difference: $(cat "$T/cmp2")"
grep -q "does not reproduce bit for bit" "$T/cmp2" || fail "$(cat "$T/cmp2")"
ok "a retraining that differs is reported with its largest tensor difference"
