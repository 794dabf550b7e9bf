#!/usr/bin/env bash
# Runs every unit test binary and every integration script, each in its own
# process with a timeout, and ends with one line "N passed, N skipped, N failed".
#   tests/run.sh [unit|integration] [NAME-FILTER]
# A process a test started that is still running when the test ends fails
# it.  A test that exits 77 is skipped (its output's last line says why): never
# counted as passed, and under CI=true (CI, .ci/run) counted as failed, since
# CI installs everything the tests need and a skip there hides a claim that
# was never checked.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${SF_BUILD:-build}
what=${1:-all}
filter=${2:-}
export SF_BIN="$PWD/$BUILD/bin"
export SF_ROOT="$PWD"
# Sanitizer builds fail a test at the first report.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-}"

pass=0; fail=0; skip=0; failed=(); skipped=()
# The processes whose environment carries TAG (every process a test starts
# inherits it, daemons included), after a grace of 3 s for the dying.
leftovers() {  # TAG
    local pids=()
    for _ in $(seq 30); do
        mapfile -t pids < <(grep -lzx "SF_TEST_TAG=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
        [ ${#pids[@]} -eq 0 ] && return 0
        sleep 0.1
    done
    echo "${pids[@]}"
}
run_one() {  # name timeout cmd...
    local name=$1 t=$2; shift 2
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return
    local log; log=$(mktemp)
    local start=$SECONDS
    local tag="$$.${name//\//.}.$RANDOM"
    SF_TEST_TAG=$tag timeout -k 10 "$t" "$@" >"$log" 2>&1
    local rc=$?
    # A test stops everything it started: one that leaves a process behind
    # fails, and the process is stopped here.
    local left; left=$(leftovers "$tag")
    if [ -n "$left" ]; then
        for p in $left; do echo "left running: pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done >>"$log"
        kill -9 $left 2>/dev/null
        [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] && rc=1
        echo "the test left $(echo $left | wc -w) process(es) running" >>"$log"
    fi
    if [ "$rc" -eq 0 ]; then
        pass=$((pass+1)); printf 'PASS %-40s %4ds\n' "$name" $((SECONDS-start))
    elif [ "$rc" -eq 77 ]; then
        local why; why=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
        if [ "${CI:-}" = true ]; then
            fail=$((fail+1)); failed+=("$name")
            printf 'FAIL %-40s %4ds (skipped in CI: %s)\n' "$name" $((SECONDS-start)) "${why:-no reason given}"
        else
            skip=$((skip+1)); skipped+=("$name")
            printf 'SKIP %-40s %4ds (%s)\n' "$name" $((SECONDS-start)) "${why:-no reason given}"
        fi
    else
        fail=$((fail+1)); failed+=("$name")
        printf 'FAIL %-40s %4ds (exit %d)\n' "$name" $((SECONDS-start)) "$rc"
        sed 's/^/    | /' "$log" | tail -n 40
    fi
    rm -f "$log"
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "unit/$(basename "$t")" 300 "$t"
    done
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
    # The method's small test models, trained once here (minutes, cached)
    # rather than inside whichever test first needs them and its timeout.
    if [ -x "$BUILD/bin/sf-train" ]; then
        start=$SECONDS
        if timeout -k 10 1500 bash tests/integration/train_models.sh "$BUILD/bin" "$BUILD/test-models"; then
            printf 'PREP %-40s %4ds\n' "test models (build/test-models)" $((SECONDS-start))
        else
            printf 'PREP %-40s %4ds FAILED (see %s/test-models/train.log; the tests that need them will fail)\n' \
                "test models" $((SECONDS-start)) "$BUILD"
        fi
    fi
    for t in tests/integration/test_*.sh; do
        [ -f "$t" ] || continue
        run_one "integration/$(basename "$t" .sh)" 600 bash "$t"
    done
fi

[ ${#skipped[@]} -gt 0 ] && printf 'skipped: %s\n' "${skipped[*]}"
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[*]}"
echo "$pass passed, $skip skipped, $fail failed"
[ "$fail" -eq 0 ]
