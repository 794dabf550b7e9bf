# One command writes the report for the five strategies (ppo, sft, d3s,
# low-density, base) on the same classes; the page opens in headless
# Chromium without errors, with the tables, a plot and an image grid; the
# Markdown and JSON hold the same tables.  Tiny settings: behaviour, not
# quality.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
D="$T/data"
start_redis
start_coordinator
start_learner --models-dir "$M"
start_workers 2 --learner "$LEP" --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2"
C=stingray,junco,scorpion
COMMON=(--method shift --classes "$C" --captions-per-class 4 --reference-images 24 --seed 3
        --finetune-images-per-class 2 --finetune-steps 2)
runs=()
runs+=("$(submit "${COMMON[@]}" --ppo-updates 3 --ppo batch_size=8 --ppo mini_batch_size=4 --rollouts-per-job 4)")
for s in sft d3s low-density base; do runs+=("$(submit "${COMMON[@]}" --strategy "$s")"); done
runs+=("$(submit "${COMMON[@]}" --strategy best-of-n --best-of-n 4)")
b1=$(submit "${COMMON[@]}" --strategy best-of-n --best-of-n 1)
for r in "${runs[@]}" "$b1"; do wait_state "$r" done 300; done
ok "six strategies ran on the same classes: ${runs[*]}"

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
"$BIN/sfctl" report "${runs[0]}" --compare "${runs[@]:1}" --out "$T/rep" --data "$D" --redis "unix:$T/redis.sock" \
    >"$T/report.out" || fail "report: $(cat "$T/report.out")"
for s in ppo sft d3s low-density base best-of-n; do
    grep -q "^| $s [|(]" "$T/rep/report.md" || fail "report.md has no row for $s: $(cat "$T/rep/report.md")"
done
python3 - "$T/rep/report.json" <<'PY' || fail "report.json"
import json, sys
r = json.load(open(sys.argv[1]))
rows = r["table1"]
assert [x["strategy"] for x in rows] == ["reference images", "ppo", "sft", "d3s", "low-density", "base",
                                         "best-of-n"], rows
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
t2 = {x["strategy"]: x for x in r["table2"]}
for run in sys.argv[3:]:
    es = [json.loads(l) for l in open(os.path.join(sys.argv[2], "datasets", run, "manifest.jsonl"))]
    fail = [e for e in es if e["generator_outcome"] in ("wrong-object", "no-object")]
    kept = [e for e in es if e["kept"]]
    x = rows[run]
    assert x["generated"] == len(es) and x["kept"] == len(kept), (x, len(es), len(kept))
    assert x["failures"] == len(fail), (x, len(fail))
    assert x["failures_rejected"] == sum(not e["kept"] for e in fail), x
    good_kept = sum(e["generator_outcome"] not in ("wrong-object", "no-object") for e in kept)
    assert x["target_class_kept"] == good_kept, (x, good_kept)
    if kept:
        assert abs(x["class_fidelity"] - good_kept / len(kept)) < 1e-9, x
    assert abs(x["threshold"] - es[0]["filter_threshold"]) < 1e-9, x
    s = x["strategy"]
    ok = [e for e in kept if e["generator_outcome"] not in ("wrong-object", "no-object")]
    if ok and "convnext_target_class_accuracy" in t2[s]:
        want = 100 * sum(e["convnext_correct"] for e in ok) / len(ok)
        assert abs(t2[s]["convnext_target_class_accuracy"] - want) < 1e-9, (t2[s], want)
    if "convnext_accuracy" in t2[s] and "convnext_accuracy" in t2["base"]:
        assert abs(t2[s]["convnext_drop"] - (t2["base"]["convnext_accuracy"] - t2[s]["convnext_accuracy"])) < 1e-9
PY
grep -q "^### The filter and class fidelity" "$T/rep/report.md" || fail "report.md has no filter table"
ok "the filter table (generated, kept, failures, recall, class fidelity) and Table 2's drops match the manifests"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || fail "chromium is not installed (make deps installs it)"
HOME="$T" timeout 120 "$CHROME" --headless=new --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
    --screenshot="$T/shot.png" --window-size=1280,2400 "file://$T/rep/report.html" >"$T/chrome.log" 2>&1
[ -s "$T/shot.png" ] || fail "no screenshot: $(tail -5 "$T/chrome.log")"
! grep -E "CONSOLE|Uncaught|Failed to load" "$T/chrome.log" || fail "the page logged errors"
HOME="$T" timeout 120 "$CHROME" --headless=new --no-sandbox --disable-gpu --dump-dom "file://$T/rep/report.html" \
    >"$T/dom.html" 2>/dev/null
for id in table1 table2 filter fig4 fig6 grid; do grep -q "id=\"$id\"" "$T/dom.html" || fail "rendered page lacks #$id"; done
grep -q "<polyline" "$T/dom.html" || fail "no plot in the page"
grep -q "<img[^>]*src=\"data:image/png;base64," "$T/dom.html" || fail "no image in the grid"
grep -q "<figcaption>[^<]*<br><b[^>]*>drew " "$T/dom.html" || fail "the grid's images carry no caption and drawn class"
ok "the page renders in headless Chromium with tables, plots and image grids ($(stat -c %s "$T/shot.png") byte screenshot)"
