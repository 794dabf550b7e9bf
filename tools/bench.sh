#!/usr/bin/env bash
# make bench: every benchmark program, then the job-system benchmark.
# Benchmarks measure speed; they are not tests and assert nothing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${SF_BUILD:-build}
for b in "$B"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b"
    echo
done
echo "== job system (noop jobs, whole path, 8 workers)"
SF_BIN="$PWD/$B/bin" tools/bench_jobs.sh 1000 2 128
