# The filter's default threshold belongs to the embedder: a CLIP folder's
# filter.json (sf-train filter writes the world CLIP's), 0.2 (the paper's)
# for a CLIP without one, and a filter.json that is there but malformed or
# out of range fails the job naming the file, never a silent 0.2.  Every
# manifest line records the threshold it was judged by.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
M=$(test_models)
D="$T/data"
start_redis
start_coordinator
# Three copies of the test CLIP: a calibrated threshold of our own, none,
# and a broken file.
for c in own none bad; do cp -r "$M/clip-world" "$T/clip-$c"; done
echo '{"threshold": 0.3125}' >"$T/clip-own/filter.json"
rm "$T/clip-none/filter.json"
printf '{"threshold": 0.3,' >"$T/clip-bad/filter.json"

ran() {  # CLIP-COPY -> the run's manifest thresholds, one per line, sorted and unique
    start_workers 1 --models-dir "$M" --data-dir "$D/$1" --gpt2-vocab "$(pwd)/data/gpt2" --clip-dir "$T/clip-$1"
    local r
    r=$(submit --method shift --classes stingray --captions-per-class 2 --reference-images 8 --strategy base \
        --finetune-images-per-class 0)
    wait_state "$r" done 120
    python3 -c 'import json,sys; print("\n".join(sorted({str(json.loads(l)["filter_threshold"]) for l in open(sys.argv[1])})))' \
        "$D/$1/datasets/$r/manifest.jsonl"
    kill "${PIDS[@]: -1}"
    wait "${PIDS[@]: -1}" 2>/dev/null
    unset 'PIDS[-1]'
}
[ "$(ran own)" = 0.3125 ] || fail "the CLIP folder's filter.json was not the default threshold"
ok "a CLIP folder's filter.json sets the default threshold, and the manifest records it"
[ "$(ran none)" = 0.2 ] || fail "a CLIP without filter.json did not get the paper's 0.2"
ok "a CLIP without filter.json gets the paper's 0.2"

start_workers 1 --models-dir "$M" --data-dir "$D/bad" --gpt2-vocab "$(pwd)/data/gpt2" --clip-dir "$T/clip-bad"
r=$(submit --method shift --classes stingray --captions-per-class 2 --reference-images 8 --strategy base \
    --finetune-images-per-class 0 --max-attempts 1)
for _ in $(seq 600); do R hgetall "sf:run:$r:dead" | grep -q "clip-bad/filter.json" && break; sleep 0.2; done
R hgetall "sf:run:$r:dead" | grep -q "clip-bad/filter.json" ||
    fail "a malformed filter.json did not fail the job naming it: $(R hgetall "sf:run:$r:dead")"
ok "a malformed filter.json fails the job, naming the file: $(R hgetall "sf:run:$r:dead" | grep -m1 -o 'clip-bad/filter.json[^"]*')"
