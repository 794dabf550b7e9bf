# No silent waits (docs/configuration.md, no_worker_timeout_ms): a run whose
# kind no connected worker offers is shown as waiting in `status`, `watch`
# and the log within a second, and fails after the configured wait; a job
# payload over the 4 MiB cap is refused at submit, naming the cap.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200 --liveness 3 --no-worker-timeout-ms 4000
start_workers 1 --kinds noop,sleep
sleep 1   # past the first liveness window after the coordinator's start
run=$(submit --classes goldfish --kind bogus) || fail "submit of kind bogus"
sleep 1
"$BIN/sfctl" status "$run" >"$T/status.txt" || fail "status"
grep -q "waiting   no connected worker offers kind 'bogus'" "$T/status.txt" ||
    fail "status does not say the run waits for a worker kind: $(cat "$T/status.txt")"
grep -q "run $run waits: no connected worker offers kind 'bogus'" "$T/coordinator.log" || fail "no log line"
[ "$(R xrange "sf:run:$run:events" - + | grep -c waiting_for_worker)" -ge 1 ] || fail "no waiting_for_worker event"
"$BIN/sfctl" watch "$run" --interval-ms 200 >"$T/watch.txt" 2>&1
rc=$?
[ "$rc" = 1 ] || fail "watch exited $rc for a run that failed waiting for a kind, expected 1"
grep -q "waiting_for_kind=bogus" "$T/watch.txt" || fail "watch never showed the wait: $(cat "$T/watch.txt")"
grep -q "no connected worker offered kind 'bogus'" "$T/watch.txt" || fail "watch did not say why the run failed"
[ "$(R hget "sf:run:$run" state)" = failed ] || fail "the run is $(R hget "sf:run:$run" state), expected failed"
ok "a run of a kind no worker offers: flagged in status, watch and the log, failed after the wait"

# A run of a kind that a worker offers runs as before.
run2=$(submit --classes goldfish --kind noop --items-per-class 5) || fail "submit noop"
wait_state "$run2" done 30
check_all_done "$run2" 5

# A payload over the job cap is refused at submit, naming it.
python3 -c 'import json; print(json.dumps({"kind":"noop","classes":["goldfish"],"payload":{"pad":"x"*(5<<20)}}))' >"$T/big.json"
expect 1 "over the 4194304-byte cap of a job payload" "$BIN/sfctl" submit --spec "$T/big.json"
ok "a 5 MiB payload is refused at submit with the cap named"
