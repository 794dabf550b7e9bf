# A worker SIGKILLed mid-run: its leased jobs come back within the liveness
# window, the run completes, and every job is done exactly once in Redis.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200 --liveness 3
start_workers 4 --slots 4 --prefetch 2
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":10}' --items-per-class 40) || fail submit
total=$((86 * 40))
# Wait until the run is well under way, then kill a worker that holds jobs.
for _ in $(seq 100); do [ "$(R hget sf:run:$run done)" -gt 200 ] 2>/dev/null && break; sleep 0.05; done
victim=${PIDS[1]}
held=$("$BIN/sfctl" workers --json | tr '{' '\n' | grep '"id":"w1"' | grep -o '"leased":[0-9]*' | cut -d: -f2)
kill -9 "$victim"
[ "$(R hget sf:run:$run state)" = running ] || fail "the run ended before the kill; make it longer"
killed_at=$(date +%s%N)
wait_state "$run" done 60
check_all_done "$run" "$total"
stats=$("$BIN/sfctl" stats --json)
echo "$stats" | grep -q '"workers_died":1,' || fail "coordinator did not see the worker die: $stats"
[ "${held:-0}" -eq 0 ] || echo "$stats" | grep -q '"requeued":0' && [ "${held:-0}" -gt 0 ] && fail "jobs were not requeued"
grep -q "worker w1 .*removed: silent" "$T/coordinator.log" || fail "no liveness message"
# A worker that leaves gracefully (SIGTERM: it drains, then says goodbye) has
# not died: workers_died stays at the one SIGKILLed, workers_left counts it.
kill -TERM "${PIDS[2]}"
for _ in $(seq 300); do
    [ "$("$BIN/sfctl" workers --json | grep -o '"id"' | wc -l)" -le 2 ] && break
    sleep 0.1
done
grep -q "worker w2 .*removed: worker drained" "$T/coordinator.log" || fail "the coordinator did not hear w2's goodbye"
stats=$("$BIN/sfctl" stats --json)
echo "$stats" | grep -q '"workers_died":1,' || fail "a worker's goodbye was counted as a death: $stats"
echo "$stats" | grep -q '"workers_left":1,' || fail "the worker that said goodbye was not counted as left: $stats"
ok "worker killed holding ${held:-0} jobs; run of $total jobs completed exactly once ($(( ($(date +%s%N) - killed_at) / 1000000 )) ms after the kill); a goodbye is no death"
