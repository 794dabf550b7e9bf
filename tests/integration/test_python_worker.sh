# A worker in another language, written from docs/protocol.md alone (Python
# with Debian's python3-zmq and python3-protobuf), joins and completes noop
# jobs: the protocol document and the .proto are enough.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import zmq, google.protobuf' 2>/dev/null || ! command -v protoc >/dev/null; then
    fail "python3-zmq, python3-protobuf and protobuf-compiler are needed (make deps installs them)"
fi
protoc -I "$SF_ROOT/proto" --python_out="$T" "$SF_ROOT/proto/shiftforge.proto" || fail "protoc"
start_redis
start_coordinator --heartbeat-ms 200
$PY "$SF_ROOT/tests/integration/py_worker.py" "$WEP" py/0 "$T" 20 >"$T/py.log" 2>&1 &
PIDS+=($!); pypid=$!
disown $pypid
for _ in $(seq 100); do "$BIN/sfctl" workers | grep -q '^py/0' && break; sleep 0.1; done
"$BIN/sfctl" workers | grep -q '^py/0 .*noop' || fail "the Python worker did not join: $(cat "$T/py.log")"
run=$(submit --classes goldfish,tench,junco --kind noop --items-per-class 40) || fail submit
wait_state "$run" done 30
check_all_done "$run" 120
kill -TERM "$pypid" 2>/dev/null
ok "a Python worker completed 120 noop jobs"

# A third-party worker with an id over the 64 bytes docs/protocol.md allows
# is refused with an Error that names the limit, and stops (exit 1).
long=$(printf 'p%.0s' $(seq 100))
out=$(timeout 60 $PY "$SF_ROOT/tests/integration/py_worker.py" "$WEP" "$long" "$T" 30 2>&1); rc=$?
[ "$rc" = 1 ] || fail "the Python worker with a 100-byte id exited $rc, expected 1 (refused): $out"
echo "$out" | grep -q "refused: hello with a worker_id of 100 bytes, over the 64-byte limit" ||
    fail "the refusal does not name the limit: $out"
"$BIN/sfctl" workers | grep -q "^$long" && fail "the 100-byte worker id was accepted: $("$BIN/sfctl" workers)"
ok "a Python worker with a 100-byte id is refused, naming the 64-byte limit"
