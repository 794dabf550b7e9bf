# One leader per Redis, a hot standby, and the fence (docs/operators.md,
# "One leader per Redis"): a second coordinator on the same Redis and
# endpoints waits as a standby; when the leader is SIGKILLed it takes over
# and the run goes on; a third, on endpoints of its own, waits in turn, and
# when the leader is SIGSTOPped past its lease, takes over; the workers and
# sfctl, given both endpoints, follow it; the stopped one, continued, finds
# its lease gone and exits without applying anything; the run completes, and
# every job has exactly one accepted effect, judged against the workers' own
# ledgers.
. "$(dirname "$0")/lib.sh"
start_redis
LEASE=1000
copts=(--heartbeat-ms 200 --liveness 3 --leader-lease-ms $LEASE)
start_coordinator "${copts[@]}"
A=$COORD_PID
WEP2="ipc://$T/workers-c.ipc" CEP2="ipc://$T/clients-c.ipc"
standby() {  # NAME [WORKER_EP CLIENT_EP]: a coordinator on the same Redis
    "$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --worker-endpoint "${2:-$WEP}" \
        --client-endpoint "${3:-$SF_COORDINATOR}" \
        "${copts[@]}" >"$T/coordinator-$1.log" 2>&1 &
    SPID=$!
    PIDS+=($SPID)
    [ "$1" = b ] || disown $SPID   # b is waited for: its exit code is checked
    for _ in $(seq 100); do grep -q "standby: the coordinator" "$T/coordinator-$1.log" && return 0; sleep 0.05; done
    fail "coordinator $1 did not say it waits as a standby: $(cat "$T/coordinator-$1.log")"
}
standby b
B=$SPID
mkdir -p "$T/ledger"
for i in 0 1 2; do
    "$BIN/sf-worker" --coordinator "$WEP,$WEP2" --worker-id "w$i" --heartbeat-ms 200 --slots 4 \
        --ledger "$T/ledger/w$i.log" >>"$T/worker-$i.log" 2>&1 &
    PIDS+=($!)
    disown $!
done
for _ in $(seq 300); do [ "$("$BIN/sfctl" workers --json 2>/dev/null | grep -o '"id"' | wc -l)" -ge 3 ] && break; sleep 0.1; done
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":4}' --items-per-class 40) || fail submit
total=$((86 * 40))
progress() { for _ in $(seq 400); do [ "$(R hget "sf:run:$run" done)" -gt "$1" ] 2>/dev/null && return 0; sleep 0.05; done; fail "no progress past $1"; }

# 1. The leader dies: the standby leads within the lease and a little.
progress 600
kill -9 "$A"
t0=$(date +%s%N)
for _ in $(seq 200); do grep -q "leader: epoch 2" "$T/coordinator-b.log" && break; sleep 0.05; done
grep -q "leader: epoch 2" "$T/coordinator-b.log" || fail "the standby did not take over: $(tail -5 "$T/coordinator-b.log")"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt $((LEASE * 5)) ] || fail "the standby took ${ms} ms to lead"
ok "leader killed: the standby led after ${ms} ms"

# 2. The leader is paused past its lease: the next standby leads and cuts
# its connections; continued, the old one finds the lease gone and exits.
standby c "$WEP2" "$CEP2"
C=$SPID
export SF_COORDINATOR="$SF_COORDINATOR,$CEP2"   # sfctl follows whichever leads
now=$(R hget "sf:run:$run" done)
progress "$now"
kill -STOP "$B"
for _ in $(seq 200); do grep -q "leader: epoch 3" "$T/coordinator-c.log" && break; sleep 0.05; done
grep -q "leader: epoch 3" "$T/coordinator-c.log" || fail "the second standby did not take over"
grep -q "connections of the coordinator before were cut" "$T/coordinator-c.log" || fail "the paused leader was not fenced off"
kill -CONT "$B"
for _ in $(seq 100); do kill -0 "$B" 2>/dev/null || break; sleep 0.05; done
kill -0 "$B" 2>/dev/null && fail "the old leader still runs after its lease was taken"
wait "$B"; rc=$?
[ "$rc" = 3 ] || fail "the old leader exited $rc, expected 3"
grep -q "lost the leader lease: HELD 3 " "$T/coordinator-b.log" || fail "the old leader did not say why: $(tail -3 "$T/coordinator-b.log")"
ok "leader paused past its lease: fenced off, and it exits when continued"
"$BIN/sfctl" --timeout 5000 status "$run" >/dev/null || fail "sfctl with both endpoints did not reach the new leader"
for i in 0 1 2; do grep -q "talking to the coordinator at $WEP2" "$T/worker-$i.log" || fail "worker w$i did not move to $WEP2"; done

wait_state "$run" done 120
check_all_done "$run" "$total"
[ "$(R get sf:coordinator:epoch)" = 3 ] || fail "epoch $(R get sf:coordinator:epoch), expected 3"
# Exactly once, against the ledgers the coordinators never touch: every
# job's stored result names an execution a worker's ledger recorded.
python3 - "$T/ledger" "$run" "$total" "$T/redis.sock" <<'PY' || fail "the ledger check failed"
import json, os, subprocess, sys
ledger_dir, run, total, sock = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
led = {}
for name in os.listdir(ledger_dir):
    for line in open(os.path.join(ledger_dir, name)):
        r, job, att, wid, epoch, _h = line.split()
        if r == run:
            led.setdefault(int(job), set()).add((int(att), wid, int(epoch)))
out = subprocess.run(["redis-cli", "-s", sock, "--raw", "HGETALL", "sf:run:%s:results" % run],
                     capture_output=True, text=True, check=True).stdout.split("\n")
res = {int(out[i]): json.loads(out[i + 1]) for i in range(0, len(out) - 1, 2)}
bad = [j for j in range(total) if j not in res or
       (res[j]["attempt"], res[j]["worker"], res[j]["epoch"]) not in led.get(j, set())]
if len(res) != total or bad:
    sys.exit("%d results for %d jobs; %d without a matching ledger line (first %s)" % (len(res), total, len(bad), bad[:5]))
print("%d jobs, each with one result matching one of %d ledger lines" % (total, sum(len(v) for v in led.values())))
PY
ok "run completed across two failovers; every job applied once (ledger)"
