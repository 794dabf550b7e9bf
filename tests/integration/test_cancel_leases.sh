# A run cancelled while its jobs are out on workers, some running and some
# queued on the worker: its leases hash in Redis is empty once the cancel is
# acknowledged (docs/redis-keys.md), the results that still come are dropped
# as stale and applied nowhere, and a coordinator that starts later removes
# leases an earlier one left behind.  The workers, whose queued jobs came
# back cancelled without running, say on leaving that they were busy between
# 0 and 100% of the time.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200
# One slot and credit 4 each: one job running, three waiting on each worker.
start_workers 2 --slots 1 --prefetch 4
run=$(submit --classes goldfish,tench,junco --kind sleep --payload '{"ms":1500}' --items-per-class 10) || fail submit
held=0
for _ in $(seq 300); do
    held=$(R hlen "sf:run:$run:leases")
    [ "$held" -ge 8 ] && break
    sleep 0.1
done
[ "$held" -ge 8 ] || fail "only $held leases in Redis before the cancel (expected 8: 2 workers x credit 4)"
"$BIN/sfctl" cancel "$run" >/dev/null || fail "cancel"
[ "$(R hget "sf:run:$run" state)" = cancelled ] || fail "run is '$(R hget "sf:run:$run" state)' after the cancel"
left=$(R hlen "sf:run:$run:leases")
[ "$left" = 0 ] || fail "$left leases left in sf:run:$run:leases after the cancel: $(R hgetall "sf:run:$run:leases" | tr '\n' ' ')"
leased=$("$BIN/sfctl" status "$run" --json | grep -o '"leased":[0-9]*' | cut -d: -f2)
[ "$leased" = 0 ] || fail "the coordinator still counts $leased jobs of the cancelled run as leased"
done_at_cancel=$(R bitcount "sf:run:$run:done")
ok "cancel with $held jobs out: no lease left in Redis or in the coordinator"

# Each worker finishes its running job and hands back the queued ones as
# cancelled: all of them come after the leases ended, so all are stale.
stale=0
for _ in $(seq 300); do
    stale=$("$BIN/sfctl" stats --json | grep -o '"results_stale":[0-9]*' | cut -d: -f2)
    [ "${stale:-0}" -ge 8 ] && break
    sleep 0.1
done
[ "${stale:-0}" -ge 8 ] || fail "only ${stale:-0} of the 8 results that came after the cancel were dropped as stale"
[ "$(R hlen "sf:run:$run:leases")" = 0 ] || fail "late results left leases: $(R hgetall "sf:run:$run:leases" | tr '\n' ' ')"
[ "$(R bitcount "sf:run:$run:done")" = "$done_at_cancel" ] || fail "late results were applied to the cancelled run"
ok "the $stale results that came after the cancel were dropped as stale"

# Busy share on leaving: three of each worker's jobs were cancelled unrun.
for i in 0 1; do kill -TERM "${PIDS[$i]}"; done
for i in 0 1; do
    for _ in $(seq 300); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -0 "${PIDS[$i]}" 2>/dev/null && fail "worker w$i did not leave on SIGTERM"
    line=$(grep "leaving after" "$T/worker-$i.log") || fail "worker w$i logged no 'leaving after' line"
    busy=$(echo "$line" | sed -n 's/.*; busy \([0-9.-]*\)% of the .*/\1/p')
    [ -n "$busy" ] || fail "no busy share in w$i's line: $line"
    python3 -c "import sys; b = float(sys.argv[1]); sys.exit(0 if 0 <= b <= 100 else 1)" "$busy" ||
        fail "worker w$i was busy $busy% of the time, outside 0..100: $line"
done
ok "the workers' busy shares are within 0..100%"

# A coordinator that starts later removes leases an earlier one left.
R hset "sf:run:$run:leases" 3 "w0 1 1" >/dev/null
kill -TERM "$COORD_PID"
for _ in $(seq 300); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$COORD_PID" 2>/dev/null && fail "the coordinator did not stop on SIGTERM"
start_coordinator --heartbeat-ms 200
[ "$(R hlen "sf:run:$run:leases")" = 0 ] || fail "a restarted coordinator kept the cancelled run's stray lease"
[ "$(R hget "sf:run:$run" state)" = cancelled ] || fail "the run is '$(R hget "sf:run:$run" state)' after the restart"
ok "a restarted coordinator empties an ended run's leases"
