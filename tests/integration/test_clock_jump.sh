# The daemons' wall clock steps +1 hour, then to 1 hour behind real time, in
# the middle of a run — what an NTP step or an operator's `date -s` does —
# while their monotonic clock runs on (libfaketime with
# FAKETIME_DONT_FAKE_MONOTONIC=1 and an offset file read at every call).
# Liveness, leases and retries run on the monotonic clock, so no worker is
# declared dead, no lease expires, nothing is requeued, and the run completes
# exactly once.  Redis and sfctl keep the real clock; the coordinator's own
# Redis hash (heartbeat_ms, its wall time) shows that each step took effect.
. "$(dirname "$0")/lib.sh"
FT_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$FT_LIB" ] || skip "libfaketime is not installed ($FT_LIB; Debian package libfaketime)"

# libfaketime keeps a shared-memory file and a semaphore per process in
# /dev/shm, removed only at a clean exit; a stale one with a reused pid makes
# the next faked process fail.  Ours go with the processes, on every exit.
ft_cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}" $COORD_PID; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" $COORD_PID; do rm -f "/dev/shm/faketime_shm_$p" "/dev/shm/sem.faketime_sem_$p"; done
    (exit $rc)
    cleanup
}
trap ft_cleanup EXIT
[ -n "${SF_KEEP:-}" ] && trap - EXIT

FT_FILE="$T/faketime.rc"
echo "+0" >"$FT_FILE"
start_redis
# The coordinator and the workers under libfaketime; nothing started later.
export LD_PRELOAD="$FT_LIB" FAKETIME_TIMESTAMP_FILE="$FT_FILE" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1
# A liveness window of 5 s, not to be met on a busy box; a jump of an hour
# is 700 windows.
start_coordinator --heartbeat-ms 500 --liveness 10
start_workers 3 --slots 2
unset LD_PRELOAD FAKETIME_TIMESTAMP_FILE FAKETIME_NO_CACHE FAKETIME_DONT_FAKE_MONOTONIC

# 86 x 3 jobs of 500 ms on 6 slots: about 22 s.  Leases of a minute: a step
# of an hour on the wall clock would end them all.
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":500}' --items-per-class 3 \
    --lease-ms 60000) || fail submit
total=$((86 * 3))

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# The coordinator's wall clock minus the real one, from the heartbeat_ms it
# writes to its hash every second (its last write, so within about 1 s).
coord_skew_ms() { echo $(($(R hget sf:coordinator heartbeat_ms) - $(now_ms))); }
# Waits until the coordinator writes a wall time within 10 minutes of real
# time plus OFFSET seconds.
wait_skew() {  # OFFSET_S
    local want=$(($1 * 1000)) s
    for _ in $(seq 300); do
        s=$(coord_skew_ms)
        [ $((s - want)) -gt -600000 ] && [ $((s - want)) -lt 600000 ] && { SKEWS+="${s} ms; "; return 0; }
        sleep 0.1
    done
    fail "the coordinator's last wall time in Redis is $s ms off real time, expected about $want ms" \
        "(libfaketime not working, or its once-a-second write stopped on the wall clock)"
}
done_count() { R hget "sf:run:$run" done; }
wait_done_over() {  # N
    for _ in $(seq 1200); do [ "$(done_count)" -gt "$1" ] 2>/dev/null && return 0; sleep 0.1; done
    fail "run $run did not get past $1 done jobs (at $(done_count))"
}

SKEWS=
# Nothing a step of the wall clock could cause has happened (so far).
check_calm() {  # WHEN
    local stats k
    stats=$("$BIN/sfctl" stats --json) || fail "sfctl stats failed $1"
    for k in workers_died expired requeued dead_lettered results_stale; do
        grep -q "\"$k\":0[,}]" <<<"$stats" || fail "$1, $k is not 0: $stats"
    done
    ! grep -E "removed: silent|lease of .* expired" "$T/coordinator.log" ||
        fail "$1, the coordinator declared a worker dead or a lease expired (above)"
}

wait_skew 0
wait_done_over 30
echo "+3600" >"$FT_FILE"
wait_skew 3600
[ "$(R hget "sf:run:$run" state)" = running ] || fail "the run ended before the step forward; make it longer"
# Several liveness windows and heartbeat intervals pass on the stepped clock.
wait_done_over $(($(done_count) + 60))
check_calm "after the step forward"
echo "-3600" >"$FT_FILE"
wait_skew -3600
[ "$(R hget "sf:run:$run" state)" = running ] || fail "the run ended before the step back; make it longer"
wait_done_over $(($(done_count) + 30))
check_calm "after the step back"

wait_state "$run" done 180
check_all_done "$run" "$total"
check_calm "at the end"
[ "$(R hget "sf:run:$run" retries)" = 0 ] || fail "run $run has $(R hget "sf:run:$run" retries) retries"
events=$(R xrange "sf:run:$run:events" - +)
! grep -q dead_letter <<<"$events" || fail "a job was dead-lettered"
[ "$("$BIN/sfctl" workers --json | grep -o '"id"' | wc -l)" = 3 ] || fail "not all 3 workers are still connected"
echo "the coordinator's wall clock, minus the real one: $SKEWS"
ok "wall clock stepped +1 h and -1 h mid-run: $total jobs done once, no worker lost, no lease expired, nothing requeued"
