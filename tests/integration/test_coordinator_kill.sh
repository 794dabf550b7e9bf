# The coordinator SIGKILLed mid-run and restarted: the run resumes from Redis
# and completes with nothing lost or doubled; workers reconnect by themselves.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200 --liveness 3
start_workers 3 --slots 4 --prefetch 2
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":5}' --items-per-class 60) || fail submit
total=$((86 * 60))
for round in 1 2; do
    for _ in $(seq 200); do [ "$(R hget sf:run:$run done)" -gt $((round * 1200)) ] 2>/dev/null && break; sleep 0.05; done
    before=$(R hget sf:run:$run done)
    kill -9 "$COORD_PID"
    [ "$before" -lt "$total" ] || fail "the run finished before the kill; make it longer"
    sleep 0.3
    start_coordinator --heartbeat-ms 200 --liveness 3
    # The log is appended across restarts: round k must have added the k-th
    # line (a grep for any line would pass round 2 on round 1's).
    n=$(grep -c "run $run resumed" "$T/coordinator.log")
    [ "$n" = "$round" ] || fail "round $round: 'run $run resumed' logged $n times, expected $round"
done
wait_state "$run" done 90
check_all_done "$run" "$total"
[ "$(R get sf:coordinator:epoch)" = 3 ] || fail "epoch $(R get sf:coordinator:epoch), expected 3"
"$BIN/sfctl" status "$run" | grep -q "$total done" || fail "status after restart"
ok "coordinator killed twice mid-run; $total jobs done exactly once"
