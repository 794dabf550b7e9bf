# Prometheus metrics: the coordinator, a worker and the learner serve
# GET /metrics, and their counters move as jobs complete.
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || skip "no curl (make deps installs it)"
start_redis
CP=$(free_port); WP=$(free_port); LP=$(free_port)
start_coordinator --metrics-port "$CP"
start_workers 1 --metrics-port "$WP" --prefetch 8
[ "$(metric $CP sf_coordinator_workers)" = 1 ] || fail "workers gauge: $(curl -s http://127.0.0.1:$CP/metrics | head)"
d0=$(metric $CP sf_coordinator_jobs_dispatched_total)
run=$(submit --classes goldfish,tench --kind noop --items-per-class 50) || fail submit
wait_state "$run" done 30
d1=$(metric $CP sf_coordinator_jobs_dispatched_total)
[ "$d1" -ge $((d0 + 100)) ] || fail "dispatched went from $d0 to $d1"
[ "$(metric $CP 'sf_coordinator_results_total{outcome="ok"}')" -ge 100 ] || fail "results counter"
[ "$(metric $CP 'sf_coordinator_runs{state="done"}')" = 1 ] || fail "runs gauge"
[ "$(metric $WP 'sf_worker_jobs_total{outcome="ok"}')" = 100 ] || fail "worker counter: $(curl -s http://127.0.0.1:$WP/metrics)"
# The page is read whole first: with pipefail, grep -q leaving at its first
# match can fail the pipeline (curl then dies of SIGPIPE on a long page).
page=$(curl -s "http://127.0.0.1:$CP/metrics")
grep -q '^# TYPE sf_coordinator_job_latency_seconds summary' <<<"$page" || fail "latency summary: $page"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CP/nope")" = 404 ] || fail "404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$CP/metrics")" = 405 ] || fail "405"
# Busy time by kind: 10 sleep jobs of 20 ms are about 0.2 s of "sleep" (libuv's
# timers count whole milliseconds of its cached loop time, so each may be a
# little under 20 ms by the worker's microsecond clock: at least 0.15 s).
run=$(submit --classes goldfish --kind sleep --payload '{"ms":20}' --items-per-class 10) || fail submit
wait_state "$run" done 30
sb=$(metric $WP 'sf_worker_kind_busy_seconds_total{kind="sleep"}')
python3 -c "import sys; sys.exit(0 if float('$sb') >= 0.15 else 1)" || fail "sleep busy seconds: $sb"
ok "coordinator and worker metrics move with jobs"

if have_learner "the learner's metrics"; then
    R hset sf:run:r9 spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"ppo":{"updates":1,"batch_size":4,"mini_batch_size":4}}' >/dev/null
    "$BIN/sf-learner" --redis "unix:$T/redis.sock" --endpoint "ipc://$T/learner.ipc" --checkpoint-dir "$T/ckpt" \
        --metrics-port "$LP" --threads 1 >>"$T/learner.log" 2>&1 &
    PIDS+=($!); disown $!
    "$ITEST/sf_fake_worker" "ipc://$T/learner.ipc" r9 send 0 4 1 64 | grep -q "accepted 4" || fail "rollouts"
    "$ITEST/sf_fake_worker" "ipc://$T/learner.ipc" r9 get 1 >/dev/null || fail "policy v1"
    [ "$(metric $LP 'sf_learner_updates_total{run="r9"}')" = 1 ] || fail "learner metrics: $(curl -s http://127.0.0.1:$LP/metrics)"
    [ "$(metric $LP 'sf_learner_rollouts_total{run="r9"}')" = 4 ] || fail "learner rollouts"
    ok "learner metrics"
fi
