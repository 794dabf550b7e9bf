#!/usr/bin/env bash
# make bench: every benchmark program, the job-system benchmark, then the
# method end to end on a local cluster of 4 workers (needs models/, which
# `make bench` trains first when they are missing).
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
echo "== job system (noop jobs, whole path, 8 workers, the default credit and fixed ones; Redis appendfsync always, as shipped, against everysec)"
SF_BIN="$PWD/$B/bin" SF_APPENDFSYNC="always everysec" tools/bench_jobs.sh 1000 default 2 16 128
echo
echo "== the peers in the same run: BullMQ, Celery and RQ against shiftforge at defaults (installs them when missing)"
SF_BIN="$PWD/$B/bin" tools/bench_peers.sh
echo
echo "== one coordinator with 1,000 and 4,000 connected workers (tools/bench_scale.sh --full for 10 M jobs)"
SF_BIN="$PWD/$B/bin" tools/bench_scale.sh
echo
echo "== coordinator memory: 100 runs of 10 M jobs submitted and cancelled"
SF_BIN="$PWD/$B/bin" tools/bench_memory.sh 100
echo
echo "== the method end to end (4 workers, 10 classes, 20 PPO updates, 2,560 images)"
SF_BUILD="$B" tools/bench_method.sh 4 20 8
