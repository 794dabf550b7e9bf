# The corpus phase: a world run with a corpus_model goes corpus -> SFT ->
# PPO -> generate -> filter -> report.  The workers sample each class's
# captions from the world's instruction model (the test models'
# instruct-world) with the Alpaca prompt, keep those that are sentences
# naming the class, and store them once under data_dir/corpus/<key>/; the
# learner's SFT reads exactly those captions; the report shows the corpus.
# A second run with the same model, prompt and settings reuses the stored
# corpus without sampling again.  Bad corpus settings are refused, naming
# the key.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
[ -s "$M/instruct-world/tokenizer.model" ] || fail "the test models have no instruct-world (train_models.sh)"
D="$T/data"
WFLAGS=(--learner "$LEP" --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2")
start_redis
start_coordinator
start_learner --models-dir "$M" --data-dir "$D" --gpt2-vocab "$(pwd)/data/gpt2"
start_workers 2 "${WFLAGS[@]}"

SFT='sft={"steps":6,"batch_size":4,"learning_rate":0.0001}'
expect 2 "'corpus_captions' is a setting of the corpus phase" "$BIN/sfctl" submit --method shift --classes junco \
    --corpus-captions 4
expect 2 "'corpus_model' needs strategy ppo and an 'sft' object" "$BIN/sfctl" submit --method shift --classes junco \
    --corpus-model instruct-world
expect 2 "'corpus_model' needs strategy ppo" "$BIN/sfctl" submit --method shift --classes junco --strategy d3s \
    --corpus-model instruct-world
expect 2 "both name the SFT corpus" "$BIN/sfctl" submit --method shift --classes junco --corpus-model instruct-world \
    --set 'sft={"steps":5,"corpus":"c.jsonl"}'
expect 2 "'corpus_model' = \"../elsewhere\"" "$BIN/sfctl" submit --method shift --classes junco \
    --corpus-model ../elsewhere --set "$SFT"
expect 2 "'corpus_template' needs {instruction}" "$BIN/sfctl" submit --method shift --classes junco \
    --corpus-model instruct-world --corpus-template "no placeholder here" --set "$SFT"
expect 2 "'corpus_attempts' must be a whole number in \[1, 64\]" "$BIN/sfctl" submit --method shift --classes junco \
    --corpus-model instruct-world --corpus-attempts 0 --set "$SFT"
ok "bad corpus settings are refused, naming the key"

COMMON=(--method shift --classes stingray,junco,scorpion --ppo-updates 3 --ppo batch_size=8 --ppo mini_batch_size=4
        --rollouts-per-job 4 --captions-per-class 3 --reference-images 8 --finetune-images-per-class 0
        --corpus-model instruct-world --corpus-captions 6 --set "$SFT")
run=$(submit "${COMMON[@]}" --seed 1) || fail submit
wait_state "$run" done 600
st=$("$BIN/sfctl" status "$run" --json)
python3 - "$st" <<'PY' || fail "phases: $st"
import json, sys
names = [p["name"] for p in json.loads(sys.argv[1])["phases"]]
assert names[:3] == ["corpus", "embed", "rollout"] and names[-3:] == ["generate", "filter", "manifest"], names
PY
[ "$(R hget sf:run:$run dead)" = 0 ] || fail "dead jobs: $(R hgetall sf:run:$run:dead)"
ok "a run with a corpus phase goes corpus -> embed -> rollout -> captions -> generate -> filter -> manifest"

# The stored corpus: one file per class, every line the class's, a sentence
# that names it (checked here on its own, not with the worker's code), with
# the model, the Alpaca prompt and the seed it came from.
python3 - "$D" "$run" <<'PY' || fail "the stored corpus"
import glob, json, os, sys
data, run = sys.argv[1:]
names = {"n01498041": "stingray", "n01534433": "junco", "n01770393": "scorpion"}
dirs = glob.glob(f"{data}/corpus/*/")
assert len(dirs) == 1, dirs
total = 0
for wnid, name in names.items():
    lines = [json.loads(l) for l in open(f"{dirs[0]}{wnid}.jsonl")]
    meta = json.load(open(f"{dirs[0]}{wnid}.json"))
    assert 1 <= len(lines) <= 6 and meta["captions"] == len(lines), (wnid, len(lines), meta)
    assert meta["captions"] + meta["rejected"] == 6, meta
    for l in lines:
        assert l["class"] == wnid and l["model"] == "instruct-world", l
        assert l["prompt"].startswith("Below is an instruction that describes a task.") and \
            f"a photo of a {name}." in l["prompt"] and l["prompt"].endswith("### Response:\n"), l["prompt"]
        c = l["caption"]
        assert name in c.lower() and c.rstrip()[-1] in ".!?" and 3 <= len(c.split()) <= 60, c
        assert len(l["seed"]) == 16 and 0 <= l["attempt"] < 4, l
    rec = json.load(open(f"{data}/runs/{run}/corpus/{wnid}.json"))
    assert rec["cached"] is False and rec["corpus"] == "corpus/" + os.path.basename(dirs[0].rstrip("/")), rec
    total += len(lines)
print(total)
PY
total=$(python3 -c "import glob; print(sum(1 for f in glob.glob('$D/corpus/*/*.jsonl') for _ in open(f)))")
grep -q "run $run: SFT of the policy: 6 steps of 4 over $total captions" "$T/learner.log" ||
    fail "the learner's SFT did not read the $total corpus captions: $(grep "SFT of" "$T/learner.log")"
ok "the workers stored each class's corpus ($total captions, each a sentence naming its class); the SFT read them"

"$BIN/sfctl" report "$run" --out "$T/report" --data "$D" --redis "unix:$T/redis.sock" >/dev/null 2>"$T/report.err" ||
    fail "report: $(cat "$T/report.err")"
grep -q "^### SFT corpus (the corpus phase)" "$T/report/report.md" || fail "no corpus section in report.md"
grep -q "^| $run | instruct-world | 3 | $total (18) | " "$T/report/report.md" ||
    fail "corpus row: $(grep -A3 "SFT corpus" "$T/report/report.md")"
grep -q "<table id=\"corpus\">" "$T/report/report.html" || fail "no corpus table in report.html"
python3 - "$T/report/report.json" "$total" <<'PY' || fail "corpus in report.json"
import json, sys
c = json.load(open(sys.argv[1]))["corpus"][0]
assert c["captions"] == int(sys.argv[2]) and c["classes"] == 3 and c["classes_reused"] == 0, c
assert c["examples"] and all(e["captions"] for e in c["examples"]), c
PY
ok "the report shows the corpus: model, counts, prompt and example captions"

# A second run asking for the same corpus reuses it: no sampling, the same
# files, and the run's records say so.
sums=$(sha256sum "$D"/corpus/*/*.jsonl)
run2=$(submit "${COMMON[@]}" --seed 2) || fail submit
wait_state "$run2" done 600
[ "$(sha256sum "$D"/corpus/*/*.jsonl)" = "$sums" ] || fail "the second run rewrote the corpus"
for w in n01498041 n01534433 n01770393; do
    grep -q '"cached":true' "$D/runs/$run2/corpus/$w.json" || fail "run 2 did not reuse $w: $(cat "$D/runs/$run2/corpus/$w.json")"
done
R hvals "sf:run:$run2:results" | grep '"corpus"' | grep -c '"cached":true' | grep -qx 3 ||
    fail "run 2's corpus results: $(R hvals "sf:run:$run2:results" | grep corpus)"
grep -q "run $run2: SFT of the policy: 6 steps of 4 over $total captions" "$T/learner.log" ||
    fail "run 2's SFT: $(grep "SFT of" "$T/learner.log")"
"$BIN/sfctl" report "$run2" --out "$T/report2" --data "$D" --redis "unix:$T/redis.sock" >/dev/null 2>&1 ||
    fail "report of run 2"
# The same corpus, so the same counts of its making; all 3 classes reused.
row1=$(grep "^| $run | instruct-world | 3 | $total (18) | " "$T/report/report.md" | cut -d'|' -f3-7)
grep -q "^| $run2 |$row1| 3 |$" "$T/report2/report.md" ||
    fail "run 2's corpus row: $(grep -A3 "SFT corpus" "$T/report2/report.md")"
ok "a second run reuses the stored corpus (same files, cached in its results and report)"

# A class whose every draw fails the check fails its job, and the run, with
# an error naming the class and the last answer.  At temperature 10 the
# model's 2,000 pieces are drawn almost uniformly: 4 of them are not a
# sentence of 3 words or more that names the class and ends in a full stop
# (a trained model's 4 tokens can be: "A small junco.").
run3=$(submit --method shift --classes junco --ppo-updates 1 --ppo batch_size=4 --ppo mini_batch_size=4 \
       --corpus-model instruct-world --corpus-captions 2 --corpus-attempts 2 --corpus-max-new-tokens 4 \
       --corpus-temperature 10 --set "$SFT") || fail submit
wait_state "$run3" failed 300
R hvals "sf:run:$run3:dead" | grep -q "wrote no caption of n01534433 (junco) that is a sentence naming the class, in 2 draws each; the last: " ||
    fail "the dead corpus job's error: $(R hvals "sf:run:$run3:dead")"
ok "a class with no caption passing the check fails the run, naming the class and the last answer"
