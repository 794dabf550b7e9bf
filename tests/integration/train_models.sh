# The small world models the method's tests run on (behaviour, not quality):
#   bash tests/integration/train_models.sh BIN OUT
# sf-train caches them, so a second call does nothing.  tests/run.sh calls it
# once before the integration tests (so no test's timeout pays for it) and
# lib.sh's test_models again (a no-op then, or the training for a test run
# on its own).  As `sf-train all` does, the CLIP trains in a second process
# while this one trains the rest, one torch thread each: two single-threaded
# trainers use two cores better than one with two threads.  The log is
# OUT/train.log (the CLIP's OUT/train-clip.log).
set -u
BIN=$1 OUT=$2
mkdir -p "$OUT"
"$BIN/sf-train" clip --out "$OUT" --threads 1 --scale 0.03 >>"$OUT/train-clip.log" 2>&1 &
clip=$!
"$BIN/sf-train" sft --out "$OUT" --threads 1 --scale 0.1 >>"$OUT/train.log" 2>&1 &&
    "$BIN/sf-train" instruct --out "$OUT" --threads 1 --scale 0.15 >>"$OUT/train.log" 2>&1 &&
    "$BIN/sf-train" convnext --out "$OUT" --threads 1 --scale 0.02 >>"$OUT/train.log" 2>&1 &&
    "$BIN/sf-train" vit --out "$OUT" --threads 1 --scale 0.02 >>"$OUT/train.log" 2>&1
rc=$?
wait "$clip" || rc=1
# The filter's threshold for that CLIP, as sf-train all calibrates it.
[ $rc = 0 ] && { "$BIN/sf-train" filter --out "$OUT" --threads 1 >>"$OUT/train.log" 2>&1 || rc=1; }
exit $rc
