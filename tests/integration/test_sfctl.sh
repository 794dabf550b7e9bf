# sfctl as a script uses it: exit codes, messages that name the bad line,
# --json, cancel, priorities; and the daemons' config checks and graceful stop.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --retry-base-ms 10
start_workers 1 --slots 1 --prefetch 1

# Class lists are validated before anything is sent.
printf 'goldfish\ntench\ndgo\n' >"$T/bad.txt"
expect 2 "line 3: unknown class 'dgo'" "$BIN/sfctl" submit --classes "$T/bad.txt" --kind noop
printf 'goldfish\nn01443537\n' >"$T/dup.txt"
expect 2 "line 2: duplicate" "$BIN/sfctl" submit --classes "$T/dup.txt" --kind noop
printf '# nothing\n' >"$T/empty.txt"
expect 2 "empty" "$BIN/sfctl" submit --classes "$T/empty.txt" --kind noop
out=$(echo "junco" | "$BIN/sfctl" submit --classes - --kind noop --json) || fail "stdin list"
echo "$out" | grep -q '"run":"r1"' || fail "--json submit: $out"
# The coordinator checks the spec too (unknown keys, bad numbers).
expect 2 "unknown key 'bogus'" "$BIN/sfctl" submit --classes junco --kind noop --set bogus=1
expect 2 "max_attempts" "$BIN/sfctl" submit --classes junco --kind noop --max-attempts 0
expect 2 "no run 'r99'" "$BIN/sfctl" status r99
expect 2 "unknown class 'nosuchthing'" "$BIN/sfctl" submit --classes goldfish,nosuchthing --kind noop
"$BIN/sfctl" --coordinator "ipc://$T/nobody.ipc" --timeout 300 runs >/dev/null 2>&1; [ $? = 3 ] || fail "unreachable: exit"
ok "class lists, specs and exit codes"

# Priorities: with one slot busy on a long run, a later high-priority run
# overtakes it.
low=$(submit --classes goldfish --kind sleep --payload '{"ms":30}' --items-per-class 40 --name low)
sleep 0.2
high=$(submit --classes tench --kind sleep --payload '{"ms":1}' --items-per-class 5 --priority 10 --name high)
wait_state "$high" done 30
[ "$(R hget sf:run:$low state)" = running ] || fail "low-priority run finished first"
"$BIN/sfctl" runs | grep -q "$high" || fail "runs table"
"$BIN/sfctl" runs --json | grep -q '"priority":10' || fail "runs --json"
ok "priorities"

# Cancel: the run stops, its state says so, watch exits 4.
"$BIN/sfctl" cancel "$low" | grep -q cancelled || fail "cancel"
wait_state "$low" cancelled 5
"$BIN/sfctl" watch "$low" >/dev/null 2>&1; [ $? = 4 ] || fail "watch of a cancelled run should exit 4"
expect 1 "already cancelled" "$BIN/sfctl" cancel "$low"
R xrange sf:run:$low:events - + | grep -q cancelled || fail "cancel event"
"$BIN/sfctl" workers | grep -q "^w0" || fail "workers table"
ok "cancel"

# Config files: unknown keys and bad values are errors naming the key.
echo '{"heartbeat_ms": 500, "bogus_key": 1}' >"$T/c.json"
expect 2 "unknown key 'bogus_key'" "$BIN/sf-coordinator" --config "$T/c.json"
echo '{"heartbeat_ms": "fast"}' >"$T/c.json"
expect 2 "'heartbeat_ms' must be a number" "$BIN/sf-coordinator" --config "$T/c.json"
expect 2 "outside" "$BIN/sf-worker" --slots 0
expect 2 "no kind 'teleport'" "$BIN/sf-worker" --kinds noop,teleport
expect 2 "unknown option '--bogus'" "$BIN/sf-worker" --bogus 1
# Settings that contradict each other are refused, naming both.
expect 2 "'retry_base_ms' (9000) and 'retry_max_ms' (100) contradict" "$BIN/sf-coordinator" --retry-base-ms 9000 --retry-max-ms 100
ok "config checks"

# SIGTERM: the coordinator stops handing out work, waits for leases, exits 0.
run=$(submit --classes goldfish --kind sleep --payload '{"ms":300}' --items-per-class 3)
sleep 0.2
kill -TERM "$COORD_PID"
for _ in $(seq 100); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$COORD_PID" 2>/dev/null && fail "coordinator did not stop on SIGTERM"
grep -q "waiting up to" "$T/coordinator.log" || fail "no drain message"
[ "$(R hget sf:run:$run done)" -ge 1 ] || fail "the leased job was not finished during the drain"
start_coordinator
wait_state "$run" done 30
check_all_done "$run" 3
# SIGTERM to a worker: it drains and says goodbye.
kill -TERM "${PIDS[0]}"
for _ in $(seq 50); do kill -0 "${PIDS[0]}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${PIDS[0]}" 2>/dev/null && fail "worker did not stop on SIGTERM"
grep -q "leaving after" "$T/worker-0.log" || fail "worker did not drain"
ok "graceful stops"

# recycle_after: a worker drains and exits after N jobs (for leaky models
# under a supervisor); its jobs are not lost.
"$BIN/sf-worker" --coordinator "$WEP" --worker-id recycler --recycle-after 5 --heartbeat-ms 200 \
    >>"$T/worker-r.log" 2>&1 &
rpid=$!
disown $rpid
PIDS+=($rpid)
run=$(submit --classes goldfish --kind noop --items-per-class 40) || fail "submit for recycle"
for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$rpid" 2>/dev/null && fail "the worker did not recycle itself"
grep -q "recycle_after reached" "$T/worker-r.log" || fail "no recycle message"
start_workers 1
wait_state "$run" done 30
check_all_done "$run" 40
ok "recycle_after"
