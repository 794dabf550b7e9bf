#!/usr/bin/env bash
# Job-system benchmark: noop jobs through the whole path (submit -> dispatch
# -> worker -> result -> Redis acknowledged) on a local cluster with 8 workers.
# Prints jobs/s, dispatch-to-ack latency p50/p99 and Redis memory per
# finished job.  Usage: tools/bench_jobs.sh [JOBS_PER_CLASS] [PREFETCH...]
# A PREFETCH of `default` starts the cluster without --prefetch (the shipped
# credit).  Each run also prints one line for scripts (tools/bench_peers.sh):
#   RESULT system=shiftforge workers=8 prefetch=P fsync=F jobs=N seconds=S
#          rate=R p50_us=A p99_us=B redis_bytes_per_job=M
# SF_BENCH_TIMEOUT (seconds, default 600) bounds the wait for a run to finish.
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
timeout_s=${SF_BENCH_TIMEOUT:-600}

read -r -a fsyncs <<< "${SF_APPENDFSYNC:-always}"
declare -A rate p50s p99s

printf '%-9s %-8s %-9s %10s %10s %10s %10s %12s\n' workers prefetch fsync jobs seconds jobs/s p50_us p99_us
for pf in "${prefetches[@]}"; do
  for fs in "${fsyncs[@]}"; do
    d=$(mktemp -d /tmp/sf-bench.XXXXXX)
    # `|| true`: under set -e a failing down (nothing up yet) would skip the rm.
    trap '"$BIN/sfctl" down --dir "$d" >/dev/null 2>&1 || true; rm -rf "$d"' EXIT
    pfarg=(--prefetch "$pf"); [ "$pf" = default ] && pfarg=()
    "$BIN/sfctl" up --dir "$d" --workers $workers --detach "${pfarg[@]}" >/dev/null
    export SF_COORDINATOR="ipc://$d/clients.ipc"
    R() { redis-cli -s "$d/redis.sock" "$@"; }
    [ "$(R config set appendfsync "$fs")" = OK ] || { echo "bench_jobs: Redis refused appendfsync $fs" >&2; exit 1; }
    mem0=$(R info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    run=$("$BIN/sfctl" submit --classes builtin:imagenet-1k --kind noop --items-per-class "$per_class" --name bench)
    deadline=$((SECONDS + timeout_s))
    while [ "$(R hget "sf:run:$run" state)" != "done" ]; do
      if [ $SECONDS -ge $deadline ]; then
        echo "bench_jobs: run $run not done after ${timeout_s} s (state $(R hget "sf:run:$run" state), $(R hget "sf:run:$run" "done") jobs done)" >&2
        exit 1
      fi
      sleep 0.05
    done
    c=$(R hget "sf:run:$run" created_ms); f=$(R hget "sf:run:$run" finished_ms); n=$(R hget "sf:run:$run" "done")
    mem1=$(R info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    st=$("$BIN/sfctl" status "$run" --json)
    p50=$(echo "$st" | grep -o '"p50":[0-9]*' | cut -d: -f2)
    p99=$(echo "$st" | grep -o '"p99":[0-9]*' | cut -d: -f2)
    secs=$(awk -v a="$c" -v b="$f" 'BEGIN{printf "%.3f", (b-a)/1000}')
    rate[$pf.$fs]=$(awk -v n="$n" -v s="$secs" 'BEGIN{print n/s}')
    p50s[$pf.$fs]=$p50; p99s[$pf.$fs]=$p99
    printf '%-9s %-8s %-9s %10s %10s %10.0f %10s %12s\n' $workers "$pf" "$fs" "$n" "$secs" "${rate[$pf.$fs]}" "$p50" "$p99"
    bpj=$(awk -v a="$mem0" -v b="$mem1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}')
    echo "  redis memory per finished job: $bpj bytes ($mem0 -> $mem1 bytes for $n jobs)"
    echo "RESULT system=shiftforge workers=$workers prefetch=$pf fsync=$fs jobs=$n seconds=$secs rate=${rate[$pf.$fs]} p50_us=$p50 p99_us=$p99 redis_bytes_per_job=$bpj"
    "$BIN/sfctl" down --dir "$d" >/dev/null 2>&1; rm -rf "$d"; trap - EXIT
  done
  for fs in "${fsyncs[@]:1}"; do
    a=${fsyncs[0]}
    awk -v pf="$pf" -v a="$a" -v b="$fs" -v ra="${rate[$pf.$a]}" -v rb="${rate[$pf.$fs]}" \
        -v la="${p50s[$pf.$a]}" -v lb="${p50s[$pf.$fs]}" -v ua="${p99s[$pf.$a]}" -v ub="${p99s[$pf.$fs]}" \
        'BEGIN { printf "  prefetch %s: appendfsync %s / %s: throughput x%.2f, p50 latency x%.2f, p99 latency x%.2f\n", pf, a, b, ra / rb, la / lb, ua / ub }'
  done
done
