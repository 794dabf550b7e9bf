# 1,000 random and truncated frames to each ROUTER socket: the coordinator
# counts and drops them, keeps serving, and a run still completes.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
start_workers 2
"$ITEST/sf_frames" "$WEP" 1000 1 >/dev/null || fail "sender (workers' socket)"
"$ITEST/sf_frames" "$SF_COORDINATOR" 1000 2 >/dev/null || fail "sender (clients' socket)"
sleep 0.5
bad=$("$BIN/sfctl" stats --json | grep -o '"frames_bad":[0-9]*' | cut -d: -f2)
[ "${bad:-0}" -ge 1900 ] || fail "only ${bad:-0} of 2000 bad frames counted"
kill -0 "$COORD_PID" || fail "the coordinator died"
run=$(submit --classes builtin:imagenet-a-r-86 --kind noop --items-per-class 5) || fail "submit after the flood"
wait_state "$run" done 30
check_all_done "$run" 430
grep -q "dropped bad frame" "$T/coordinator.log" || fail "no log line for bad frames"
[ "$(grep -c "dropped bad frame" "$T/coordinator.log")" -lt 40 ] || fail "bad frames flood the log"
ok "$bad bad frames counted and dropped; the coordinator kept serving"
