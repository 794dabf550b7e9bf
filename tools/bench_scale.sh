#!/usr/bin/env bash
# Scale benchmark: one coordinator with 1,000 and 4,000 connected workers
# (build/itest/sf_loadgen, the worker protocol in a few processes), on a
# private Redis with the persistence `sfctl up` ships (AOF, appendfsync
# always), at default settings (adaptive credit).  For each worker count:
#   - idle: the workers connected and heartbeating for IDLE seconds — the
#     coordinator's CPU share then is the cost of their heartbeats;
#   - one run of JOBS no-op jobs: jobs/s from submit accepted to the last
#     result acknowledged by Redis (the run's created_ms .. finished_ms),
#     the coordinator's peak RSS, Redis memory growth, and exactly once:
#     Redis's done count and bitmap, the jobs the generator received, no
#     duplicate or stale result, no dead job;
#   - RUNS concurrent runs (JOBS / RUNS jobs each, priorities 0..9): all
#     submitted before the workers connect, then served; a run that started
#     after one of lower priority is a priority inversion (expected: none);
#     inversions by finish time are counted too.
# Usage: tools/bench_scale.sh [--full] [WORKERS…]
#   default: 1000 and 4000 workers, 1 M jobs, 100 runs of 10,000 jobs;
#   --full: 10 M jobs and 100 runs of 100,000 jobs (the issue's sizes).
# SF_SCALE_JOBS, SF_SCALE_RUNS, SF_SCALE_PROCS (generator processes, default
# 2) and SF_SCALE_IDLE (seconds, default 5) override.  Prints a Markdown
# table at the end (and to $SF_SCALE_OUT when set).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SF_BIN:-$PWD/${SF_BUILD:-build}/bin}
LG=${SF_LOADGEN:-$(dirname "$BIN")/itest/sf_loadgen}
full=0
if [ "${1:-}" = --full ]; then full=1; shift; fi
counts=("${@:-1000}")
[ $# -gt 0 ] || counts=(1000 4000)
jobs=${SF_SCALE_JOBS:-$([ $full = 1 ] && echo 10000000 || echo 1000000)}
runs=${SF_SCALE_RUNS:-100}
procs=${SF_SCALE_PROCS:-2}
idle=${SF_SCALE_IDLE:-5}
for b in "$BIN/sf-coordinator" "$BIN/sfctl" "$LG"; do
    [ -x "$b" ] || { echo "bench_scale: $b is missing (make build)" >&2; exit 1; }
done
[ $((jobs % 1000)) = 0 ] && [ $((jobs % (runs * 1000))) = 0 ] ||
    { echo "bench_scale: JOBS ($jobs) must be a multiple of 1000 x RUNS ($runs)" >&2; exit 1; }
need_fd=$(( ${counts[-1]} + 256 ))
[ "$(ulimit -n)" -ge "$need_fd" ] || ulimit -n "$need_fd" 2>/dev/null ||
    { echo "bench_scale: ulimit -n is $(ulimit -n); $need_fd descriptors are needed" >&2; exit 1; }

tick=$(getconf CLK_TCK)
cpu_s() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
redis_mem() { redis-cli -s "$d/redis.sock" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r'; }
R() { redis-cli -s "$d/redis.sock" "$@"; }
wait_for() {  # SECONDS WHAT CMD…: polls CMD every 0.1 s
    local secs=$1 what=$2; shift 2
    for _ in $(seq $((secs * 10))); do "$@" && return 0; sleep 0.1; done
    echo "bench_scale: timed out after ${secs}s waiting for $what" >&2
    return 1
}
workers_joined() { [ "$("$BIN/sfctl" workers --json | grep -o '"id"' | wc -l)" -ge "$1" ]; }
run_done() { [ "$(R hget "sf:run:$1" state)" = "done" ]; }
stat_of() { "$BIN/sfctl" stats --json | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }

lg_pid=""; cp=""; rp=""; d=""
stop_all() {
    [ -n "$lg_pid" ] && kill "$lg_pid" 2>/dev/null && wait "$lg_pid" 2>/dev/null
    [ -n "$cp" ] && kill "$cp" 2>/dev/null
    [ -n "$rp" ] && kill "$rp" 2>/dev/null
    wait 2>/dev/null || true
    [ -n "$d" ] && rm -rf "$d"
    lg_pid=""; cp=""; rp=""; d=""
}
trap stop_all EXIT

start_loadgen() {  # WORKERS
    "$LG" "ipc://$d/workers.ipc" "$1" --procs "$procs" >"$d/loadgen.out" 2>"$d/loadgen.err" &
    lg_pid=$!
    wait_for 120 "$1 workers to join" workers_joined "$1"
}
stop_loadgen() {  # sets lgline: the generator's totals
    kill "$lg_pid"; wait "$lg_pid" 2>/dev/null || true; lg_pid=""
    lgline=$(grep '^loadgen total' "$d/loadgen.out") || { echo "bench_scale: the load generator printed no totals:" >&2; cat "$d/loadgen.out" "$d/loadgen.err" >&2; exit 1; }
}

rows=()
for W in "${counts[@]}"; do
    d=$(mktemp -d /tmp/sf-scale.XXXXXX)
    redis-server --port 0 --unixsocket "$d/redis.sock" --dir "$d" --appendonly yes --appendfsync always \
        --maxmemory-policy noeviction --save "" >"$d/redis.log" 2>&1 &
    rp=$!
    wait_for 10 "redis" redis-cli -s "$d/redis.sock" ping >/dev/null 2>&1
    "$BIN/sf-coordinator" --redis "unix:$d/redis.sock" --worker-endpoint "ipc://$d/workers.ipc" \
        --client-endpoint "ipc://$d/clients.ipc" >"$d/coordinator.log" 2>&1 &
    cp=$!
    export SF_COORDINATOR="ipc://$d/clients.ipc"
    wait_for 30 "the coordinator" "$BIN/sfctl" --timeout 200 stats >/dev/null
    rss0=$(rss_kb "$cp")
    echo "== $W workers ($procs generator processes)"
    start_loadgen "$W"
    sleep 1
    c0=$(cpu_s "$cp"); sleep "$idle"; c1=$(cpu_s "$cp")
    hb=$(awk -v a="$c0" -v b="$c1" -v s="$idle" 'BEGIN{printf "%.1f", 100 * (b - a) / s}')
    rss_idle=$(rss_kb "$cp")
    echo "idle with $W workers: coordinator ${hb}% of a core (heartbeats), RSS ${rss0} -> ${rss_idle} KiB"

    mem0=$(redis_mem)
    cc0=$(cpu_s "$cp"); rc0=$(cpu_s "$rp")
    run=$("$BIN/sfctl" submit --classes builtin:imagenet-1k --kind noop --items-per-class $((jobs / 1000)) --name scale)
    wait_for 3600 "run $run" run_done "$run"
    created=$(R hget "sf:run:$run" created_ms); fin=$(R hget "sf:run:$run" finished_ms)
    mem1=$(redis_mem)
    cc1=$(cpu_s "$cp"); rc1=$(cpu_s "$rp")
    # CPU time a job costs the coordinator and Redis (the capacity model's inputs).
    cus=$(awk -v a="$cc0" -v b="$cc1" -v n="$jobs" 'BEGIN{printf "%.2f", 1e6 * (b - a) / n}')
    rus=$(awk -v a="$rc0" -v b="$rc1" -v n="$jobs" 'BEGIN{printf "%.2f", 1e6 * (b - a) / n}')
    secs=$(awk -v a="$created" -v b="$fin" 'BEGIN{printf "%.2f", (b - a) / 1000}')
    rate=$(awk -v n="$jobs" -v s="$secs" 'BEGIN{printf "%.0f", n / s}')
    hwm=$(hwm_kb "$cp")
    done_n=$(R hget "sf:run:$run" "done"); bits=$(R bitcount "sf:run:$run:done"); dead=$(R hget "sf:run:$run" dead)
    dup=$(stat_of results_dup); stale=$(stat_of results_stale)
    stop_loadgen
    got=$(echo "$lgline" | sed -n 's/.* \([0-9]*\) jobs,.*/\1/p')
    once=yes
    [ "$done_n" = "$jobs" ] && [ "$bits" = "$jobs" ] && [ "$dead" = 0 ] && [ "$got" = "$jobs" ] &&
        [ "${dup:-0}" = 0 ] || once="NO (done $done_n, bits $bits, dead $dead, received $got, duplicates $dup)"
    redis_per_job=$(awk -v a="$mem0" -v b="$mem1" -v n="$jobs" 'BEGIN{printf "%.2f", (b - a) / n}')
    echo "one run of $jobs jobs: ${secs} s, $rate jobs/s, coordinator peak RSS $((hwm / 1024)) MiB," \
         "Redis +$(( (mem1 - mem0) / 1024 )) KiB ($redis_per_job bytes a job), every job once: $once, stale results ${stale:-0}," \
         "CPU a job: coordinator $cus µs, Redis $rus µs"
    echo "  $lgline"

    # RUNS concurrent runs, submitted while no worker is connected.
    wait_for 60 "the workers to leave" bash -c "! $BIN/sfctl workers --json | grep -q '\"id\"'"
    per=$((jobs / runs))
    declare -A prio=()
    ids=()
    for i in $(seq 0 $((runs - 1))); do
        p=$(( (i * 7) % 10 ))
        r=$("$BIN/sfctl" submit --classes builtin:imagenet-1k --kind noop --items-per-class $((per / 1000)) \
            --priority "$p" --name "scale-$i")
        prio[$r]=$p
        ids+=("$r")
    done
    start_loadgen "$W"
    for r in "${ids[@]}"; do wait_for 3600 "run $r" run_done "$r"; done
    stop_loadgen
    notdone=0
    # Priorities: every run was queued before any worker came, so a run
    # that started (its first job dispatched) before a run of higher
    # priority is an inversion; so is one that finished before it (but
    # with up to 256 jobs in flight a worker, runs much smaller than the
    # jobs in flight finish together, so count those only as a figure).
    inversions() {  # FIELD: inversions of the runs' order by FIELD
        for r in "${ids[@]}"; do echo "$(R hget "sf:run:$r" "$1") ${prio[$r]}"; done | sort -k1,1n -k2,2nr |
            awk '{ for (q = 0; q < $2; q++) if (seen[q]) n++; seen[$2] = 1 } END { print n + 0 }'
    }
    sinv=$(inversions started_ms)
    finv=$(inversions finished_ms)
    for r in "${ids[@]}"; do [ "$(R hget "sf:run:$r" "done")" = "$per" ] || notdone=$((notdone + 1)); done
    first=$(for r in "${ids[@]}"; do R hget "sf:run:$r" started_ms; done | sort -n | head -1)
    last=$(for r in "${ids[@]}"; do R hget "sf:run:$r" finished_ms; done | sort -n | tail -1)
    rsecs=$(awk -v a="$first" -v b="$last" 'BEGIN{printf "%.2f", (b - a) / 1000}')
    rrate=$(awk -v n="$jobs" -v s="$rsecs" 'BEGIN{printf "%.0f", n / s}')
    echo "$runs concurrent runs of $per jobs: ${rsecs} s from the first job dispatched to the last acknowledged, $rrate jobs/s," \
         "priority inversions: $sinv by start, $finv by finish; runs not complete $notdone"
    rows+=("| $W | $procs | ${hb} % | $((rss_idle / 1024)) MiB | $jobs | $secs | **$rate** | $((hwm / 1024)) MiB | $redis_per_job | $cus / $rus µs | $once | $runs × $per: $rsecs s, $rrate jobs/s; inversions $sinv by start, $finv by finish |")
    stop_all
done

{
    echo "| workers | generator processes | coordinator CPU, idle (heartbeats) | coordinator RSS, idle | jobs in one run | seconds | jobs/s | coordinator peak RSS | Redis bytes a job | CPU a job, coordinator / Redis | every job exactly once | concurrent runs (priorities 0–9) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "${SF_SCALE_OUT:-/dev/null}"
