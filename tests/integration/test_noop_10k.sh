# 10,000 noop jobs over 4 workers: the run completes and Redis says so.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
start_workers 4 --prefetch 16
run=$(submit --classes builtin:imagenet-1k --kind noop --items-per-class 10 --name noop10k) || fail "submit"
[ "$run" = r1 ] || fail "first run id is '$run'"
wait_state "$run" done 60
check_all_done "$run" 10000
[ "$(R hget sf:run:$run total)" = 10000 ] || fail "total"
[ "$(R hget sf:run:$run:classes n01440764:done)" = 10 ] || fail "per-class progress"
R zscore sf:runs "$run" >/dev/null || fail "run index"
R xlen "sf:run:$run:events" | grep -qv '^0$' || fail "no events"
"$BIN/sfctl" status "$run" | grep -q "10000 done" || fail "sfctl status"
ok "10000 noop jobs done once each over 4 workers"
