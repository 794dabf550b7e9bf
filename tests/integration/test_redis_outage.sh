# Redis goes away mid-run: the coordinator keeps workers busy, holds
# acknowledgements back (no job counts as done while Redis cannot have it),
# reconnects with backoff, and the run completes exactly once — also when
# Redis comes back empty, because the coordinator writes its state again.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200
start_workers 2 --slots 4 --prefetch 2
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":10}' --items-per-class 80) || fail submit
total=$((86 * 80))
next=600
for round in 1 2; do
    for _ in $(seq 400); do [ "$(R hget sf:run:$run done)" -gt $next ] 2>/dev/null && break; sleep 0.05; done
    kill -9 "$REDIS_PID"
    sleep 0.3
    d1=$("$BIN/sfctl" status "$run" --json | grep -o '"done":[0-9]*' | head -1 | cut -d: -f2)
    x1=$("$BIN/sfctl" stats --json | grep -o '"dispatched":[0-9]*' | cut -d: -f2)
    sleep 1
    d2=$("$BIN/sfctl" status "$run" --json | grep -o '"done":[0-9]*' | head -1 | cut -d: -f2)
    x2=$("$BIN/sfctl" stats --json | grep -o '"dispatched":[0-9]*' | cut -d: -f2)
    [ -n "$d1" ] && [ "$d1" = "$d2" ] || fail "done moved from $d1 to $d2 while Redis was down"
    # Jobs handed out during the outage itself (dispatched since start is
    # always ahead of done by the prefetch, so comparing those proves nothing).
    [ "$x2" -gt "$x1" ] || fail "workers got no work while Redis was down (dispatched $x1 -> $x2)"
    # Round 2: Redis comes back with nothing at all.
    [ $round = 2 ] && rm -rf "$T"/appendonly*
    start_redis
    [ "$(R hget sf:run:$run state)" != done ] || [ $round = 2 ] || fail "the run ended during the first outage; make it longer"
    next=$((d2 + 1500))
done
wait_state "$run" done 60
check_all_done "$run" "$total"
grep -q "connection lost" "$T/coordinator.log" || fail "no message about the lost connection"
grep -q "rewriting the state of 1 active runs" "$T/coordinator.log" || fail "no resync"
[ "$(R zcard sf:runs)" = 1 ] || fail "the run index was not rewritten"
R hget sf:run:$run spec | grep -q '"kind":"sleep"' || fail "the spec was not rewritten"
ok "two Redis outages (one losing all data): $total jobs done exactly once"
