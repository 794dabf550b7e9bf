#!/usr/bin/env bash
# Job-system benchmark: noop jobs through the whole path (submit -> dispatch
# -> worker -> result -> Redis acknowledged) on a local cluster with 8 workers.
# Prints jobs/s, dispatch-to-ack latency p50/p99 and Redis memory per
# finished job.  Usage: tools/bench_jobs.sh [JOBS_PER_CLASS] [PREFETCH...]
# SF_APPENDFSYNC="always everysec" runs each prefetch once per Redis fsync
# policy (the first is what `sfctl up` ships; the others are set with CONFIG
# SET on the same cluster before the run) and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SF_BIN:-$PWD/${SF_BUILD:-build}/bin}
per_class=${1:-1000}          # x 1000 classes
shift || true
prefetches=("${@:-128}")
workers=8

read -r -a fsyncs <<< "${SF_APPENDFSYNC:-always}"
declare -A rate p50s p99s

printf '%-9s %-8s %-9s %10s %10s %10s %10s %12s\n' workers prefetch fsync jobs seconds jobs/s p50_us p99_us
for pf in "${prefetches[@]}"; do
  for fs in "${fsyncs[@]}"; do
    d=$(mktemp -d /tmp/sf-bench.XXXXXX)
    "$BIN/sfctl" up --dir "$d" --workers $workers --detach --prefetch "$pf" >/dev/null
    trap '"$BIN/sfctl" down --dir "$d" >/dev/null 2>&1; rm -rf "$d"' EXIT
    export SF_COORDINATOR="ipc://$d/clients.ipc"
    R() { redis-cli -s "$d/redis.sock" "$@"; }
    [ "$(R config set appendfsync "$fs")" = OK ] || { echo "bench_jobs: Redis refused appendfsync $fs" >&2; exit 1; }
    mem0=$(R info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    run=$("$BIN/sfctl" submit --classes builtin:imagenet-1k --kind noop --items-per-class "$per_class" --name bench)
    while [ "$(R hget "sf:run:$run" state)" != "done" ]; do sleep 0.05; done
    c=$(R hget "sf:run:$run" created_ms); f=$(R hget "sf:run:$run" finished_ms); n=$(R hget "sf:run:$run" "done")
    mem1=$(R info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    st=$("$BIN/sfctl" status "$run" --json)
    p50=$(echo "$st" | grep -o '"p50":[0-9]*' | cut -d: -f2)
    p99=$(echo "$st" | grep -o '"p99":[0-9]*' | cut -d: -f2)
    secs=$(awk -v a="$c" -v b="$f" 'BEGIN{printf "%.3f", (b-a)/1000}')
    rate[$pf.$fs]=$(awk -v n="$n" -v s="$secs" 'BEGIN{print n/s}')
    p50s[$pf.$fs]=$p50; p99s[$pf.$fs]=$p99
    printf '%-9s %-8s %-9s %10s %10s %10.0f %10s %12s\n' $workers "$pf" "$fs" "$n" "$secs" "${rate[$pf.$fs]}" "$p50" "$p99"
    echo "  redis memory per finished job: $(awk -v a="$mem0" -v b="$mem1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}') bytes ($mem0 -> $mem1 bytes for $n jobs)"
    "$BIN/sfctl" down --dir "$d" >/dev/null 2>&1; rm -rf "$d"; trap - EXIT
  done
  for fs in "${fsyncs[@]:1}"; do
    a=${fsyncs[0]}
    awk -v pf="$pf" -v a="$a" -v b="$fs" -v ra="${rate[$pf.$a]}" -v rb="${rate[$pf.$fs]}" \
        -v la="${p50s[$pf.$a]}" -v lb="${p50s[$pf.$fs]}" -v ua="${p99s[$pf.$a]}" -v ub="${p99s[$pf.$fs]}" \
        'BEGIN { printf "  prefetch %s: appendfsync %s / %s: throughput x%.2f, p50 latency x%.2f, p99 latency x%.2f\n", pf, a, b, ra / rb, la / lb, ua / ub }'
  done
done
