# One learner per run (docs/operators.md): a second sf-learner on the same
# Redis is a standby for a run the first holds — it serves nothing of it
# and writes nothing; when the holder is SIGKILLed it takes the run once the
# lease lapses; and a holder paused past its lease finds, when continued,
# that the other took it: it stops serving the run and its writes are
# refused (the run's learner hash names the new holder's progress only).
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
start_redis
FW="$ITEST/sf_fake_worker"
R hset sf:run:r1 spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"seed":1,"ppo":{"updates":50,"batch_size":8,"mini_batch_size":4,"max_staleness":1}}' >/dev/null
LEASE=1000
learner() {  # NAME ENDPOINT
    "$BIN/sf-learner" --redis "unix:$T/redis.sock" --endpoint "$2" --checkpoint-dir "$T/ckpt-$1" --threads 1 \
        --run-lease-ms $LEASE >>"$T/learner-$1.log" 2>&1 &
    PIDS+=($!)
}
A_EP="ipc://$T/la.ipc" B_EP="ipc://$T/lb.ipc"
learner a "$A_EP"; A=$!
out=$("$FW" "$A_EP" r1 get 0) || fail "policy from the first learner: $out"
holder=$(R get sf:run:r1:learner:owner)
echo "$holder" | grep -q ":$A:" || fail "the run's lease names '$holder', not learner a (pid $A)"
learner b "$B_EP"; B=$!
# b is asked for r1 while a holds it: it waits, saying who holds it.
"$FW" "$B_EP" r1 get 0 >"$T/b-get.txt" 2>&1 &
BG=$!
PIDS+=($BG)
for _ in $(seq 100); do grep -q "run r1: the learner .* holds it" "$T/learner-b.log" && break; sleep 0.05; done
grep -q "run r1: the learner .* holds it" "$T/learner-b.log" || fail "learner b did not wait for the run's lease"
sleep 1.5   # well past a lease: a renews it, b keeps waiting
kill -0 "$BG" 2>/dev/null || fail "learner b served r1 while a held it: $(cat "$T/b-get.txt")"
ok "a second learner waits for a run the first holds"

# a dies: b takes the run once the lease lapses and answers the waiting worker.
kill -9 "$A"
wait "$BG" || fail "the worker waiting on b got no policy: $(cat "$T/b-get.txt")"
grep -q "^version 0 " "$T/b-get.txt" || fail "b's answer: $(cat "$T/b-get.txt")"
R get sf:run:r1:learner:owner | grep -q ":$B:" || fail "the lease does not name learner b"
ok "the holder killed: the standby learner took the run"

# b paused past its lease; c takes the run; b, continued, stops serving it.
C_EP="ipc://$T/lc.ipc"
learner c "$C_EP"; C=$!
"$FW" "$C_EP" r1 get 0 >"$T/c-get.txt" 2>&1 &
CG=$!
PIDS+=($CG)
sleep 0.5
kill -STOP "$B"
wait "$CG" || fail "the worker waiting on c got no policy: $(cat "$T/c-get.txt")"
R get sf:run:r1:learner:owner | grep -q ":$C:" || fail "the lease does not name learner c"
out=$("$FW" "$C_EP" r1 send 0 8 1 64) || fail "rollouts to c: $out"
for _ in $(seq 100); do [ "$(R hget sf:run:r1:learner updates)" = 1 ] && break; sleep 0.1; done
[ "$(R hget sf:run:r1:learner updates)" = 1 ] || fail "c's update is not in Redis"
# From the moment b runs again, its statistics of r1 (0 updates, written by
# its overdue cron before it learns of c) must never reach Redis: read the
# hash every 10 ms meanwhile (c rewrites it each second, which would hide
# a stale write read later).
python3 - "$T/redis.sock" >"$T/watch.txt" <<'PY' &
import subprocess, sys, time
seen = set()
end = time.time() + 2.5
while time.time() < end:
    seen.add(subprocess.run(["redis-cli", "-s", sys.argv[1], "HGET", "sf:run:r1:learner", "updates"],
                            capture_output=True, text=True).stdout.strip())
    time.sleep(0.01)
print(" ".join(sorted(seen)))
PY
W=$!
sleep 0.2
kill -CONT "$B"
wait "$W"
[ "$(cat "$T/watch.txt")" = 1 ] || fail "the learner hash read updates '$(cat "$T/watch.txt")' after b went on: its stale write was applied"
for _ in $(seq 100); do grep -q "run r1 is held by another learner now" "$T/learner-b.log" && break; sleep 0.05; done
grep -q "run r1 is held by another learner now" "$T/learner-b.log" || fail "b did not notice it lost the run"
out=$("$FW" "$B_EP" r1 get 0); echo "$out" | grep -q "held by another learner" || fail "b still serves r1: $out"
ok "a holder paused past its lease stops serving the run, and its writes are refused"
