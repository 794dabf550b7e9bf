#!/usr/bin/env bash
# Coordinator memory under submit-and-cancel: N runs of 10 M noop jobs each
# are submitted and cancelled at once, one after another, on a local cluster
# with the shipped settings (no workers: nothing runs, every run is held
# only until it is cancelled and Redis has it).  Prints the coordinator's
# RSS after the first run has left memory and after the last, and their
# ratio.  A submit refused because too much is held (max_runs,
# max_jobs_held) is retried after 0.2 s and counted.
#   tools/bench_memory.sh [RUNS] [JOBS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SF_BIN:-$PWD/${SF_BUILD:-build}/bin}
runs=${1:-100}
jobs=${2:-10000000}
d=$(mktemp -d /tmp/sf-benchmem.XXXXXX)
trap '"$BIN/sfctl" down --dir "$d" >/dev/null 2>&1; rm -rf "$d"' EXIT
"$BIN/sfctl" up --dir "$d" --workers 0 --detach >/dev/null
export SF_COORDINATOR="ipc://$d/clients.ipc"
cpid=$(pgrep -f "sf-coordinator --redis unix:$d/redis.sock" | head -1)
[ -n "$cpid" ] || { echo "bench_memory: no coordinator found" >&2; exit 1; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$cpid/status"; }
held() { "$BIN/sfctl" stats --json | grep -o '"jobs_held":[0-9]*' | cut -d: -f2; }
# Until what the runs hold has left memory (finished_hold_ms after Redis had it).
settle() { for _ in $(seq 100); do [ "$(held)" = 0 ] && return; sleep 0.1; done; echo "bench_memory: slots still held" >&2; exit 1; }
refused=0
cycle() {
    local run
    until run=$("$BIN/sfctl" submit --kind noop --classes goldfish --items-per-class "$jobs" --name mem 2>"$d/err"); do
        grep -q "max_jobs_held\|max_runs" "$d/err" || { cat "$d/err" >&2; exit 1; }
        refused=$((refused + 1))
        sleep 0.2
    done
    "$BIN/sfctl" cancel "$run" >/dev/null
}
rss0=$(rss)
start=$SECONDS
cycle
settle
rss1=$(rss)
for _ in $(seq 2 "$runs"); do cycle; done
settle
rssn=$(rss)
printf 'coordinator RSS: %s KiB at start, %s KiB after run 1 left memory, %s KiB after run %s (%d runs of %d jobs in %d s; %d submits refused while too much was held)\n' \
    "$rss0" "$rss1" "$rssn" "$runs" "$runs" "$jobs" $((SECONDS - start)) "$refused"
awk -v a="$rss1" -v b="$rssn" -v n="$runs" 'BEGIN { printf "RSS after run %d / after run 1: x%.3f\n", n, b / a }'
