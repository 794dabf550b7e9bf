# A phase marked "until": "learner_done" (the PPO rollout phase) hands out
# jobs carrying the learner's policy version until the learner writes done
# in Redis; then its remaining jobs are skipped and the next phase opens.  A
# failed learner fails the run; a phase that runs out of jobs first too.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
start_workers 2 --slots 2
spec='phases=[{"kind":"sleep","name":"rollout","items_per_class":2000,"payload":{"ms":5},"until":"learner_done"},
              {"kind":"noop","name":"after","items_per_class":3}]'
run=$(submit --classes goldfish,tench --method phases --set "$spec") || fail submit
R hset sf:run:$run:learner version 3 done 0 state ready >/dev/null
for _ in $(seq 50); do "$BIN/sfctl" status "$run" --json | grep -q '"learner_version":3' && break; sleep 0.1; done
"$BIN/sfctl" status "$run" --json | grep -q '"learner_version":3' || fail "the learner's version was not picked up"
sleep 0.5
[ "$(R hget sf:run:$run state)" = running ] || fail "the phase ended before the learner was done"
R hset sf:run:$run:learner version 4 done 1 >/dev/null
wait_state "$run" done 30
skipped=$(R hget sf:run:$run skipped)
[ "$skipped" -gt 0 ] || fail "no rollout job was skipped"
done_jobs=$(R hget sf:run:$run done)
[ $((done_jobs + skipped)) = 4006 ] || fail "done $done_jobs + skipped $skipped != 4006"
R xrange sf:run:$run:events - + | tr '\n' ' ' | grep -Eq "learner_done .*phase_done detail after" || fail "events"
"$BIN/sfctl" status "$run" --json | grep -q '"name":"after","kind":"noop","total":6,"done":6' || fail "the next phase did not run"
ok "the learner's done ends the rollout phase ($skipped jobs skipped)"

run2=$(submit --classes goldfish --method phases --set "$spec") || fail submit2
R hset sf:run:$run2:learner version 0 done 0 state failed error "cannot load the policy: boom" >/dev/null
wait_state "$run2" failed 30
R hget sf:run:$run2 last_error | grep -q "learner failed: cannot load the policy: boom" || fail "error not shown"
ok "a failed learner fails the run with its error"

run3=$(submit --classes goldfish --method phases \
       --set 'phases=[{"kind":"noop","name":"rollout","items_per_class":3,"until":"learner_done"}]') || fail submit3
wait_state "$run3" failed 30
R hget sf:run:$run3 last_error | grep -q "used all 3 jobs before the learner reached its target" || fail "shortfall"
ok "a rollout phase that runs out of jobs fails the run"
