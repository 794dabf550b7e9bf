# A job that always fails is retried with backoff and dead-lettered after
# max_attempts, with its error in Redis and in `sfctl status`; a job that
# fails twice then succeeds is done; a fatal failure is not retried.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
start_workers 2
run=$(submit --classes n01440764 --kind fail --items-per-class 3 --max-attempts 3 \
      --retry-base-ms 20 --name always-fails) || fail submit
wait_state "$run" failed 30
[ "$(R hget sf:run:$run dead)" = 3 ] || fail "dead count $(R hget sf:run:$run dead)"
[ "$(R hlen sf:run:$run:dead)" = 3 ] || fail "dead hash"
R hget sf:run:$run:dead 0 | grep -q '"attempts":3' || fail "attempts not recorded: $(R hget sf:run:$run:dead 0)"
R hget sf:run:$run:dead 0 | grep -q 'failing as asked on attempt 3' || fail "error not recorded"
[ "$(R hget sf:run:$run retries)" = 6 ] || fail "retries $(R hget sf:run:$run retries), expected 6"
# status answers for a failed run like any other (exit 0); the run's fate
# is in what it prints (and in watch's exit code, below).
out=$("$BIN/sfctl" status "$run") || fail "sfctl status of a failed run exited $?: $out"
echo "$out" | grep -q "DEAD-LETTERED" || fail "sfctl status does not show dead jobs: $out"
echo "$out" | grep -q "failing as asked on attempt 3" || fail "sfctl status does not show the error"
"$BIN/sfctl" watch "$run" >/dev/null 2>&1; [ $? = 1 ] || fail "watch of a failed run should exit 1"
R xrange sf:run:$run:events - + | grep -q dead_letter || fail "no dead_letter event"

run2=$(submit --classes n01440764 --kind fail --payload '{"times":2}' --items-per-class 4 \
       --max-attempts 3 --retry-base-ms 10) || fail submit2
wait_state "$run2" done 30
check_all_done "$run2" 4

run3=$(submit --classes n01440764 --kind fail --payload '{"fatal":true}' --max-attempts 5) || fail submit3
wait_state "$run3" failed 30
R hget sf:run:$run3:dead 0 | grep -q '"attempts":1' || fail "a fatal failure was retried"
ok "dead-lettering, retries with backoff and fatal failures"

# Phases run in order, the next opening only when the last job of the one
# before (a retried one included) is acknowledged.
run4=$(submit --classes goldfish,tench --method phases \
       --set 'phases=[{"kind":"sleep","name":"first","payload":{"ms":5},"items_per_class":4},
                      {"kind":"fail","name":"second","payload":{"times":1}},
                      {"kind":"noop","name":"third","items_per_class":3}]' --retry-base-ms 10) || fail submit4
wait_state "$run4" done 30
[ "$(R hget sf:run:$run4 total)" = $((8 + 2 + 6)) ] || fail "phase totals"
events=$(R xrange sf:run:$run4:events - + | tr '\n' ' ')
echo "$events" | grep -Eq "phase_done detail first .*phase_done detail second .*phase_done detail third" ||
    fail "phases did not complete in order: $events"
"$BIN/sfctl" status "$run4" | grep -q "^second .* 2 .* 2 " || fail "status phases table"
ok "phases run in order"

# A job that outlives its lease is given to another worker; after
# max_attempts expiries it is dead-lettered, saying why, and its late result
# is dropped as stale.
run5=$(submit --classes goldfish --kind sleep --payload '{"ms":2500}' --lease-ms 300 --max-attempts 2 \
       --retry-base-ms 10) || fail submit5
wait_state "$run5" failed 30
R hget sf:run:$run5:dead 0 | grep -q 'lease of 300 ms expired' || fail "expiry not recorded: $(R hget sf:run:$run5:dead 0)"
for _ in $(seq 50); do
    "$BIN/sfctl" stats --json | grep -q '"results_stale":[1-9]' && break; sleep 0.1
done
"$BIN/sfctl" stats --json | grep -q '"expired":2' || fail "expired counter: $("$BIN/sfctl" stats --json)"
"$BIN/sfctl" stats --json | grep -q '"results_stale":[1-9]' || fail "the late result was not dropped as stale"
ok "lease expiry"
