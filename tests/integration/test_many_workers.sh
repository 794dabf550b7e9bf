# One coordinator with 1,000 connected workers (sf_loadgen: the worker
# protocol in two processes, adaptive credit as sf-worker asks for it):
# all are welcomed and listed, a run of 100,000 no-op jobs is done with
# every job exactly once (Redis's done count and bitmap, the jobs the
# workers received, no duplicate result, no dead job), and 20 runs queued
# before the workers came start in priority order.  tools/bench_scale.sh
# measures the same setting; this test checks only behaviour.
. "$(dirname "$0")/lib.sh"
LG="$(dirname "$BIN")/itest/sf_loadgen"
[ -x "$LG" ] || fail "$LG is missing (make build)"
[ "$(ulimit -n)" -ge 1300 ] || ulimit -n 1300 2>/dev/null || skip "ulimit -n is $(ulimit -n); 1,000 workers need 1,300"
start_redis
start_coordinator

lg_pid=""
start_loadgen() {
    "$LG" "$WEP" 1000 --procs 2 >"$T/loadgen.out" 2>"$T/loadgen.err" &
    lg_pid=$!
    PIDS+=("$lg_pid")
    for _ in $(seq 600); do
        [ "$("$BIN/sfctl" workers --json | grep -o '"credit_mode":"adaptive"' | wc -l)" = 1000 ] && return 0
        sleep 0.1
    done
    fail "not 1000 workers with adaptive credit listed: $("$BIN/sfctl" workers --json | grep -o '"id"' | wc -l)"
}
stop_loadgen() {
    kill "$lg_pid"
    for _ in $(seq 300); do kill -0 "$lg_pid" 2>/dev/null || break; sleep 0.1; done
    grep '^loadgen total' "$T/loadgen.out" || fail "the load generator printed no totals: $(cat "$T/loadgen.out" "$T/loadgen.err")"
}

start_loadgen
ok "1000 workers joined and are listed"

run=$(submit --classes builtin:imagenet-1k --kind noop --items-per-class 100 --name many) || fail submit
wait_state "$run" done 300
check_all_done "$run" 100000
line=$(stop_loadgen)
echo "$line" | grep -q "^loadgen total: 1000 workers welcomed, 100000 jobs," ||
    fail "the workers did not receive each of the 100000 jobs once: $line"
dup=$("$BIN/sfctl" stats --json | grep -o '"results_dup":[0-9]*' | cut -d: -f2)
[ "$dup" = 0 ] || fail "$dup duplicate results"
ok "100000 jobs over 1000 workers, each done and received once"

for _ in $(seq 100); do "$BIN/sfctl" workers --json | grep -q '"id"' || break; sleep 0.1; done
declare -A prio=()
ids=()
for i in $(seq 0 19); do
    p=$(( (i * 7) % 10 ))
    r=$(submit --classes builtin:imagenet-1k --kind noop --items-per-class 5 --priority "$p" --name "p$i") || fail submit
    prio[$r]=$p
    ids+=("$r")
done
start_loadgen
for r in "${ids[@]}"; do wait_state "$r" done 300; check_all_done "$r" 5000; done
# Queued before any worker came: a run that started before one of higher
# priority is an inversion (ties in the millisecond are ordered by priority).
order=$(for r in "${ids[@]}"; do echo "$(R hget "sf:run:$r" started_ms) ${prio[$r]} $r"; done | sort -k1,1n -k2,2nr)
inv=$(echo "$order" | awk '{ for (q = 0; q < $2; q++) if (seen[q]) n++; seen[$2] = 1 } END { print n + 0 }')
[ "$inv" = 0 ] || fail "$inv priority inversions in the runs' start order: $(echo "$order" | tr '\n' ';')"
stop_loadgen >/dev/null
ok "20 queued runs started in priority order and finished, every job once"
