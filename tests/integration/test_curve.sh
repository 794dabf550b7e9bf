# ZeroMQ CURVE: keys made by `sfctl keygen`; a worker or client whose key
# the coordinator allows works, one with an unknown key gets nothing and is
# logged and counted; SIGHUP lets a newly allowed key in; the learner
# authenticates its workers the same way; and a recording of every byte
# between the peers holds a run's distinctive strings without CURVE and
# not with it.
. "$(dirname "$0")/lib.sh"
S="$BIN/sfctl"
K="$T/keys"
mkdir -p "$K/allowed" "$K/learner-allowed"

# ---- keygen -------------------------------------------------------------------------
for n in coord learner w1 cli stranger; do
    "$S" keygen --out "$K/$n" >"$T/keygen.out" || fail "keygen $n: $(cat "$T/keygen.out")"
done
[ "$(stat -c %a "$K/w1.key")" = 600 ] || fail "the .key file is mode $(stat -c %a "$K/w1.key"), expected 600"
[ "$(stat -c %a "$K/w1.pub")" = 644 ] || fail "the .pub file is mode $(stat -c %a "$K/w1.pub")"
grep -q '^secret = .\{40\}$' "$K/w1.key" && grep -q '^public = .\{40\}$' "$K/w1.key" || fail "key file format"
! grep -q secret "$K/w1.pub" || fail "the .pub file holds a secret"
pub() { sed -n 's/^public = //p' "$1"; }
sec() { sed -n 's/^secret = //p' "$1"; }
grep -qF "public key: $(pub "$K/stranger.pub")" "$T/keygen.out" || fail "keygen does not print the public key"
before=$(sha1sum "$K/w1.key")
expect 2 "never overwrites" "$S" keygen --out "$K/w1"
[ "$(sha1sum "$K/w1.key")" = "$before" ] || fail "keygen changed an existing key"
cp "$K/w1.pub" "$K/cli.pub" "$K/allowed/"
cp "$K/w1.pub" "$K/learner-allowed/"
ok "sfctl keygen writes .key (0600) and .pub, and never overwrites"

# ---- bad settings are refused before anything starts --------------------------------
start_redis
cp "$K/coord.key" "$T/open.key"
chmod 644 "$T/open.key"
expect 2 "too open" "$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --curve-key-file "$T/open.key" \
    --curve-allowed-dir "$K/allowed"
out=$("$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --curve-key-file "$T/open.key" --curve-allowed-dir "$K/allowed" 2>&1)
echo "$out" | grep -qF -e "$(sec "$K/coord.key")" && fail "the secret key was printed: $out"
expect 2 "needs 'curve_allowed_dir'" "$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --curve-key-file "$K/coord.key"
expect 2 "holds a secret key" "$BIN/sf-worker" --curve-key-file "$K/w1.key" --curve-server-key-file "$K/coord.key"
expect 2 "curve_server_key_file is not" "$BIN/sf-worker" --curve-key-file "$K/w1.key"
ok "a group/other-readable secret key, a .key given as a server key and half a CURVE setup are refused"

# ---- a byte-recording TCP relay between the peers and the coordinator ---------------
cat >"$T/relay.py" <<'PY'
import socket, sys, threading
up, record, portfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0))
lst.listen(64)
open(portfile + ".tmp", "w").write(str(lst.getsockname()[1]))
import os; os.rename(portfile + ".tmp", portfile)
lock = threading.Lock()
rec = open(record, "ab")
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            with lock:
                rec.write(d)
                rec.flush()
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = lst.accept()
    try:
        u = socket.create_connection(("127.0.0.1", up))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
PY
RELAYS=()
# Not called in $(…): the relay's pid must reach PIDS in this shell, or
# cleanup never stops it (it outlived the test before).
relay() {  # UPSTREAM_PORT RECORD -> sets RELAY_PORT
    local pf="$T/relay.$RANDOM.port"
    /usr/bin/python3 "$T/relay.py" "$1" "$2" "$pf" >>"$T/relay.log" 2>&1 &
    RELAYS+=($!)
    PIDS+=($!)
    disown $!
    for _ in $(seq 100); do [ -s "$pf" ] && { RELAY_PORT=$(cat "$pf"); return 0; }; sleep 0.05; done
    fail "the relay did not start"
}
stop_all() {
    for p in "${PIDS[@]}" $COORD_PID; do kill -9 "$p" 2>/dev/null; done
    PIDS=()
    RELAYS=()
    COORD_PID=
}
# Sets SF_COORDINATOR and WEP to relays in front of a coordinator on fresh ports.
through_relays() {  # RECORD
    CP=$(free_port)
    WP=$(free_port)
    relay "$CP" "$1"
    SF_COORDINATOR="tcp://127.0.0.1:$RELAY_PORT"
    relay "$WP" "$1"
    WEP="tcp://127.0.0.1:$RELAY_PORT"
    export SF_COORDINATOR
}

# Without CURVE the run's name and payload cross the wire in clear.
through_relays "$T/plain.rec"
start_coordinator --client-endpoint "tcp://127.0.0.1:$CP" --worker-endpoint "tcp://127.0.0.1:$WP" --heartbeat-ms 200
start_workers 1
MARK1="plain-marker-$$-$RANDOM"
run=$(submit --classes goldfish --kind noop --items-per-class 3 --name "$MARK1" --payload "{\"note\":\"$MARK1\"}") ||
    fail "submit without CURVE"
wait_state "$run" done 30
[ "$("$S" status "$run" --json | grep -c "$MARK1")" -ge 1 ] || fail "status does not show the name"
n=$(grep -a -c "$MARK1" "$T/plain.rec")
[ "$n" -ge 2 ] || fail "the marker crossed the relay $n times without CURVE: the recording is broken"
grep -a -q n01443537 "$T/plain.rec" || fail "goldfish's wnid did not cross the relay in clear without CURVE"
ok "without CURVE the recording holds the run's name and payload ($n places)"
stop_all

# ---- CURVE on -------------------------------------------------------------------------
export SF_CURVE_KEY="$K/cli.key" SF_CURVE_SERVER_KEY="$K/coord.pub"
MP=$(free_port)
through_relays "$T/curve.rec"
start_coordinator --client-endpoint "tcp://127.0.0.1:$CP" --worker-endpoint "tcp://127.0.0.1:$WP" --heartbeat-ms 200 \
    --curve-key-file "$K/coord.key" --curve-allowed-dir "$K/allowed" --metrics-port "$MP"
grep -qF "CURVE on: server public key $(pub "$K/coord.pub"); 2 allowed client keys" "$T/coordinator.log" ||
    fail "no CURVE start message"

# A worker with a key the coordinator does not know gets no job.
"$BIN/sf-worker" --coordinator "$WEP" --worker-id stranger --heartbeat-ms 200 --kinds noop \
    --curve-key-file "$K/stranger.key" --curve-server-key-file "$K/coord.pub" >>"$T/worker-stranger.log" 2>&1 &
PIDS+=($!)
disown $!
MARK2="curve-marker-$$-$RANDOM"
run=$(submit --classes goldfish,tench --kind noop --items-per-class 5 --name "$MARK2" --payload "{\"note\":\"$MARK2\"}") ||
    fail "submit with an allowed key"
sleep 3
[ "$(R hget "sf:run:$run" done)" = 0 ] || fail "jobs were done while only the stranger worker was there"
st=$(R hget "sf:run:$run" state)
[ "$st" = queued ] || [ "$st" = running ] || fail "the run is '$st'"
"$S" workers --json | grep -q stranger && fail "the stranger worker joined"
grep -qF "refused public key $(pub "$K/stranger.pub") on workers" "$T/coordinator.log" ||
    fail "the coordinator did not log the refused worker key"
refused=$(metric "$MP" 'sf_coordinator_curve_refused_total{domain="workers"}')
[ "${refused:-0}" -ge 1 ] || fail "sf_coordinator_curve_refused_total{domain=\"workers\"} is '$refused'"
[ "$(grep -cF "refused public key $(pub "$K/stranger.pub") on workers" "$T/coordinator.log")" -le 1 ] ||
    fail "a refused key is logged more than once a minute"
grep -qF "CURVE: is this worker's public key $(pub "$K/stranger.pub")" "$T/worker-stranger.log" ||
    fail "the refused worker gives no hint: $(tail -3 "$T/worker-stranger.log")"
ok "a worker with an unknown key gets no job; its key is logged once and counted ($refused refusals)"

# sfctl with an unknown key is told so; without keys it times out.
expect 1 "refused this client's CURVE key" env SF_CURVE_KEY="$K/stranger.key" "$S" --timeout 5000 submit \
    --classes goldfish --kind noop
grep -qF "refused public key $(pub "$K/stranger.pub") on clients" "$T/coordinator.log" ||
    fail "the coordinator did not log the refused client key"
out=$(env -u SF_CURVE_KEY -u SF_CURVE_SERVER_KEY "$S" --timeout 1000 stats 2>&1); rc=$?
[ $rc = 3 ] || fail "sfctl without keys exited $rc: $out"
ok "sfctl with an unknown key is refused with a clear error (exit 1); without keys it gets no answer (exit 3)"

# The allowed worker completes the run.
"$BIN/sf-worker" --coordinator "$WEP" --worker-id w1 --heartbeat-ms 200 --kinds noop \
    --curve-key-file "$K/w1.key" --curve-server-key-file "$K/coord.pub" >>"$T/worker-w1.log" 2>&1 &
PIDS+=($!)
disown $!
wait_state "$run" done 30
check_all_done "$run" 10
"$S" workers | grep -q '^w1 ' || fail "w1 is not listed"
"$S" workers | grep -q '^stranger ' && fail "the stranger is listed"
accepted=$(metric "$MP" 'sf_coordinator_curve_accepted_total{domain="workers"}')
[ "${accepted:-0}" -ge 1 ] || fail "sf_coordinator_curve_accepted_total is '$accepted'"
ok "a worker with an allowed key completes the run over CURVE"

# Nothing readable on the wire.
size=$(stat -c %s "$T/curve.rec")
[ "$size" -gt 2000 ] || fail "only $size bytes crossed the relay: the traffic did not go through it"
n=$(grep -a -c "$MARK2" "$T/curve.rec")
[ "$n" = 0 ] || fail "the marker is readable on the wire with CURVE ($n places)"
grep -a -q n01443537 "$T/curve.rec" && fail "goldfish's wnid is readable on the wire with CURVE"
ok "with CURVE, $size bytes crossed the wire and none of the run's strings can be read"

# SIGHUP: the stranger's key is allowed now, and it joins on its next handshake.
cp "$K/stranger.pub" "$K/allowed/"
kill -HUP "$COORD_PID"
for _ in $(seq 150); do "$S" workers | grep -q '^stranger ' && break; sleep 0.1; done
"$S" workers | grep -q '^stranger ' || fail "the stranger did not join after SIGHUP: $(tail -3 "$T/coordinator.log")"
grep -q "CURVE: 3 allowed client keys loaded" "$T/coordinator.log" || fail "no reload message"
ok "SIGHUP rereads curve_allowed_dir: a newly allowed worker joins"

# ---- the learner ---------------------------------------------------------------------
if have_learner "the learner over CURVE"; then
    FW="$ITEST/sf_fake_worker"
    R hset sf:run:r900 spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"seed":1,"ppo":{"updates":3,"batch_size":8,"mini_batch_size":4}}' >/dev/null
    start_learner --curve-key-file "$K/learner.key" --curve-allowed-dir "$K/learner-allowed"
    out=$(SF_CURVE_KEY="$K/w1.key" SF_CURVE_SERVER_KEY="$K/learner.pub" "$FW" "$LEP" r900 get 0) ||
        fail "policy fetch over CURVE: $out"
    echo "$out" | grep -q "^version 0 " || fail "policy over CURVE: $out"
    out=$(SF_CURVE_KEY="$K/stranger.key" SF_CURVE_SERVER_KEY="$K/learner.pub" timeout 4 "$FW" "$LEP" r900 get 0)
    echo "$out" | grep -q "^version" && fail "a worker with an unknown key got the policy"
    grep -qF "refused public key $(pub "$K/stranger.pub") on workers" "$T/learner.log" ||
        fail "the learner did not log the refused key"
    out=$(timeout 4 env -u SF_CURVE_KEY -u SF_CURVE_SERVER_KEY "$FW" "$LEP" r900 get 0)
    echo "$out" | grep -q "^version" && fail "a worker without CURVE got the policy"
    ok "the learner serves the allowed worker over CURVE and refuses the others"
fi

# No secret key is ever logged.
for k in "$K"/*.key; do
    s=$(sec "$k")
    for f in "$T"/*.log; do grep -qF -e "$s" "$f" && fail "the secret of $(basename "$k") is in $(basename "$f")"; done
done
ok "no secret key appears in any log"
