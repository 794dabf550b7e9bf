# 1,000 random and truncated frames to each ROUTER socket: the coordinator
# counts and drops them, keeps serving, and a run still completes.  Then the
# refusals a peer must hear (docs/protocol.md, "Checks on every frame"): a
# worker id over 64 bytes, a frame over the 16 MiB cap and a frame of
# another protocol version are each answered with an Error naming the limit
# or both versions, and counted; sf-worker and sfctl facing a coordinator of
# another version exit non-zero saying so.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
start_workers 2
"$ITEST/sf_frames" "$WEP" 1000 1 >/dev/null || fail "sender (workers' socket)"
"$ITEST/sf_frames" "$SF_COORDINATOR" 1000 2 >/dev/null || fail "sender (clients' socket)"
sleep 0.5
cstat() { "$BIN/sfctl" stats --json | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
bad=$(cstat frames_bad)
[ "${bad:-0}" -ge 1900 ] || fail "only ${bad:-0} of 2000 bad frames counted"
kill -0 "$COORD_PID" || fail "the coordinator died"
run=$(submit --classes builtin:imagenet-a-r-86 --kind noop --items-per-class 5) || fail "submit after the flood"
wait_state "$run" done 30
check_all_done "$run" 430
grep -q "dropped bad frame" "$T/coordinator.log" || fail "no log line for bad frames"
[ "$(grep -c "dropped bad frame" "$T/coordinator.log")" -lt 40 ] || fail "bad frames flood the log"
ok "$bad bad frames counted and dropped; the coordinator kept serving"

# Worker ids are at most 64 bytes: 65 is refused with an Error that says so
# (fatal: the same hello would be refused again), 64 joins.
out=$("$ITEST/sf_frames" "$WEP" hello 65) || fail "no answer to a hello with a 65-byte worker id: $out"
echo "$out" | grep -q "^error code -4 fatal 1 version 1 peer_version 1: .*65 bytes, over the 64-byte limit" ||
    fail "a 65-byte worker id was not refused naming the limit: $out"
out=$("$ITEST/sf_frames" "$WEP" hello 64)
[ "$out" = welcome ] || fail "a 64-byte worker id was not welcomed: $out"
"$BIN/sfctl" workers | grep -q "^$(printf 'w%.0s' $(seq 65)) " && fail "the 65-byte worker id is listed as a worker"
expect 2 "'worker_id' is 65 bytes, over the 64-byte limit" timeout 30 "$BIN/sf-worker" --coordinator "ipc://$T/nobody.ipc" --worker-id "$(printf 'x%.0s' $(seq 65))"
ok "worker ids over 64 bytes are refused by the coordinator and by sf-worker"

# A frame over the 16 MiB cap is read (ZMQ_MAXMSGSIZE is twice that),
# counted and answered; the coordinator keeps serving.
over0=$(cstat frames_oversize)
out=$("$ITEST/sf_frames" "$WEP" oversize $((16 * 1024 * 1024 + 1))) || fail "no answer to an oversize frame: $out"
echo "$out" | grep -q "^error code -6 fatal 0 .*: frame of 16777217 bytes over the 16777216-byte cap" ||
    fail "the oversize frame was not refused naming the cap: $out"
[ "$(cstat frames_oversize)" = $((${over0:-0} + 1)) ] || fail "frames_oversize went from ${over0:-0} to $(cstat frames_oversize)"
ok "a frame over the size cap is counted and answered"

# Another protocol version, on either socket: an Error naming both, of the
# kind every version reads, counted.
ver0=$(cstat frames_version)
out=$("$ITEST/sf_frames" "$WEP" hello 5 2) || fail "no answer to a hello of version 2: $out"
echo "$out" | grep -q "^error code -4 fatal 1 version 1 peer_version 2: protocol version 2 .* version 1" ||
    fail "a version-2 hello was not refused naming both versions: $out"
out=$("$ITEST/sf_frames" "$SF_COORDINATOR" request 7) || fail "no answer to a request of version 7: $out"
echo "$out" | grep -q "^error code -4 fatal 1 version 1 peer_version 7: protocol version 7 .* version 1" ||
    fail "a version-7 request was not refused naming both versions: $out"
[ "$(cstat frames_version)" = $((${ver0:-0} + 2)) ] || fail "frames_version went from ${ver0:-0} to $(cstat frames_version)"
kill -0 "$COORD_PID" || fail "the coordinator died"
ok "frames of another protocol version are counted and answered"

# A job whose payload is over the 4 MiB cap (from a coordinator of another
# build, played by sf_frames) fails at once as fatal, naming the cap, instead
# of being dropped with its frame to wait out a lease of minutes.
"$ITEST/sf_frames" "ipc://$T/big.ipc" job $((5 << 20)) 30 >"$T/big.log" 2>&1 &
big=$!
PIDS+=($big)
# (not under timeout: the cleanup's kill -9 of timeout would orphan the worker)
"$BIN/sf-worker" --coordinator "ipc://$T/big.ipc" --worker-id big --kinds noop --heartbeat-ms 200 \
    >"$T/big-worker.log" 2>&1 &
bigw=$!
PIDS+=($bigw)
wait $big || fail "no result for a job over the payload cap: $(cat "$T/big.log")"
kill "$bigw" 2>/dev/null; wait "$bigw" 2>/dev/null
# status 3 is FATAL in proto/shiftforge.proto
grep -q "^result status 3: job payload of 5242880 bytes is over the 4194304-byte cap" "$T/big.log" ||
    fail "a job over the payload cap did not fail as fatal naming the cap: $(cat "$T/big.log")"
ok "a job over the payload cap fails at once, naming it"

# A coordinator of version 2 (played by sf_frames) refuses our version-1
# peers: sf-worker and sfctl stop, non-zero, naming both versions.
"$ITEST/sf_frames" "ipc://$T/v2.ipc" serve 2 120 >"$T/v2.log" 2>&1 &
PIDS+=($!)
disown $!
expect 1 "refused this worker: .*(it speaks protocol version 2, this worker 1)" \
    timeout 60 "$BIN/sf-worker" --coordinator "ipc://$T/v2.ipc" --worker-id v1 --kinds noop --heartbeat-ms 200
expect 1 "refused the request: .*(it speaks protocol version 2, this sfctl 1)" \
    "$BIN/sfctl" --coordinator "ipc://$T/v2.ipc" --timeout 60000 stats
ok "sf-worker and sfctl exit non-zero on a coordinator of another version"
