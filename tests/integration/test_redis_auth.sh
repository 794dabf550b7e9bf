# Redis AUTH with an ACL user: the coordinator with the right password file
# works and sends AUTH again on every reconnect; with a wrong password it
# logs a clear error naming the user (never the password), writes nothing
# and keeps retrying, rereading the file, so a corrected or rotated password
# takes effect without a restart; the password is in no log, no `ps` line
# and no /metrics; the learner and `sfctl top` authenticate too.
. "$(dirname "$0")/lib.sh"
start_redis
PW="pw-$$-$RANDOM-Zq9.x"
OLDPW=$PW
BAD="bad-$$-$RANDOM-Kx7"
NEWPW="rotated-$$-$RANDOM"
ADMIN_PW="admin-$$-$RANDOM"
U=sfuser
# The daemons' user, an admin user for this test's own redis-cli, and no
# default user: a connection without AUTH can do nothing.
R ACL SETUSER "$U" on ">$PW" '~*' '&*' '+@all' >/dev/null || fail "ACL SETUSER"
R ACL SETUSER admin on ">$ADMIN_PW" '~*' '&*' '+@all' >/dev/null || fail "ACL SETUSER admin"
R ACL SETUSER default off >/dev/null || fail "turning the default user off"
export REDISCLI_AUTH="$ADMIN_PW"
R() { redis-cli --no-auth-warning --user admin -s "$T/redis.sock" "$@"; }
[ "$(R ping)" = PONG ] || fail "redis-cli with the admin user"
env -u REDISCLI_AUTH redis-cli -s "$T/redis.sock" ping 2>&1 | grep -q NOAUTH || fail "Redis lets anyone in"
printf '%s\n' "$PW" >"$T/redis.pw"
printf '%s\n' "$BAD" >"$T/bad.pw"
cp "$T/bad.pw" "$T/wrong.pw"
chmod 600 "$T/redis.pw" "$T/bad.pw" "$T/wrong.pw"
auth_errors() { grep -c "refused AUTH" "$T/coordinator.log"; }

# ---- a wrong password --------------------------------------------------------------------
"$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --redis-user "$U" --redis-password-file "$T/wrong.pw" \
    --worker-endpoint "$WEP" --client-endpoint "$SF_COORDINATOR" >>"$T/coordinator.log" 2>&1 &
COORD_PID=$!
disown $COORD_PID
for _ in $(seq 100); do grep -q "refused AUTH" "$T/coordinator.log" && break; sleep 0.05; done
sleep 1.5
grep -q "refused AUTH as user '$U': WRONGPASS" "$T/coordinator.log" ||
    fail "no clear AUTH error: $(cat "$T/coordinator.log")"
kill -0 "$COORD_PID" 2>/dev/null || fail "the coordinator gave up instead of retrying"
[ "$(auth_errors)" = 1 ] || fail "the refused AUTH is logged on every retry"
[ -z "$(R keys '*')" ] || fail "something was written to Redis: $(R keys '*')"
"$BIN/sfctl" --timeout 500 stats >/dev/null 2>&1; [ $? = 3 ] || fail "the coordinator serves clients without Redis"
# It keeps retrying, reading the file each time: once it is corrected, it starts.
printf '%s\n' "$PW" >"$T/wrong.pw"
for _ in $(seq 60); do "$BIN/sfctl" --timeout 200 stats >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/sfctl" --timeout 500 stats >/dev/null || fail "the coordinator did not start once its password file was corrected"
kill -9 "$COORD_PID"
COORD_PID=
ok "a wrong password: a clear error naming the user, nothing written, retried until the file is corrected"

# ---- the right password -------------------------------------------------------------------
MP=$(free_port)
start_coordinator --redis-user "$U" --redis-password-file "$T/redis.pw" --heartbeat-ms 200 --metrics-port "$MP"
start_workers 1
run=$(submit --classes goldfish,tench --kind noop --items-per-class 10) || fail submit
wait_state "$run" done 30
check_all_done "$run" 20
ok "with the password file a run completes"

# A lost connection reconnects with AUTH first.
R client kill user "$U" >/dev/null
for _ in $(seq 50); do [ "$(grep -c 'redis: connected' "$T/coordinator.log")" -ge 3 ] && break; sleep 0.1; done
run=$(submit --classes goldfish --kind noop --items-per-class 10) || fail "submit after the reconnect"
wait_state "$run" done 30
check_all_done "$run" 10
grep -q "connection lost" "$T/coordinator.log" || fail "the connection was not lost"
# The password rotated in Redis before in the file: refused, logged, counted
# and retried until the file has the new one.
before=$(auth_errors)
R ACL SETUSER "$U" resetpass ">$NEWPW" >/dev/null
R client kill user "$U" >/dev/null
for _ in $(seq 100); do [ "$(auth_errors)" -gt "$before" ] && break; sleep 0.05; done
[ "$(auth_errors)" -gt "$before" ] || fail "no error for the refused reconnect"
sleep 1
failures=$(metric "$MP" sf_coordinator_redis_auth_failures_total)
[ "${failures:-0}" -ge 2 ] || fail "sf_coordinator_redis_auth_failures_total is '$failures' after a second of retries"
"$BIN/sfctl" stats --json | grep -q '"redis_connected":false' || fail "stats should say Redis is not connected"
printf '%s\n' "$NEWPW" >"$T/redis.pw"
for _ in $(seq 50); do grep -q "AUTH accepted" "$T/coordinator.log" && break; sleep 0.1; done
grep -q "AUTH accepted" "$T/coordinator.log" || fail "the rotated password file was not taken"
run=$(submit --classes tench --kind noop --items-per-class 4) || fail "submit after the password was rotated"
wait_state "$run" done 30
ok "AUTH on every reconnect; a refused one is logged, counted ($failures) and retried with the file reread"
PW=$NEWPW

# ---- the learner and sfctl top ----------------------------------------------------------------
if have_learner "the learner's Redis AUTH"; then
    R hset sf:run:r900 spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"seed":1,"ppo":{"updates":3,"batch_size":8,"mini_batch_size":4}}' >/dev/null
    start_learner --redis-user "$U" --redis-password-file "$T/redis.pw"
    out=$("$ITEST/sf_fake_worker" "$LEP" r900 get 0) || fail "the learner could not read the run's spec: $out"
    echo "$out" | grep -q "^version 0 " || fail "policy: $out"
    for _ in $(seq 30); do [ "$(R hget sf:run:r900:learner version)" = 0 ] && break; sleep 0.1; done
    [ "$(R hget sf:run:r900:learner version)" = 0 ] || fail "the learner wrote no statistics"
    "$BIN/sf-learner" --redis "unix:$T/redis.sock" --endpoint "ipc://$T/learner2.ipc" --checkpoint-dir "$T/ckpt2" \
        --redis-user "$U" --redis-password-file "$T/bad.pw" >>"$T/learner-bad.log" 2>&1 &
    PIDS+=($!)
    disown $!
    for _ in $(seq 100); do grep -q "refused AUTH" "$T/learner-bad.log" && break; sleep 0.1; done
    grep -q "refused AUTH as user '$U'" "$T/learner-bad.log" || fail "the learner gives no clear AUTH error"
    ok "the learner authenticates (and says so when it cannot)"
fi
out=$(SF_REDIS_USER=$U SF_REDIS_PASSWORD=$PW "$BIN/sfctl" top --once --redis "unix:$T/redis.sock") ||
    fail "sfctl top with SF_REDIS_PASSWORD: $out"
echo "$out" | grep -q "$run" || fail "sfctl top does not show $run: $out"
expect 3 "NOAUTH" "$BIN/sfctl" top --once --redis "unix:$T/redis.sock"
expect 3 "refused AUTH as user '$U'" env SF_REDIS_USER=$U SF_REDIS_PASSWORD=nope "$BIN/sfctl" top --once \
    --redis "unix:$T/redis.sock"
ok "sfctl top authenticates with SF_REDIS_USER / SF_REDIS_PASSWORD and says clearly when it cannot"

# The password shows nowhere.
for p in $COORD_PID "${PIDS[@]}"; do
    ps -o args= -p "$p" 2>/dev/null | grep -qF -e "$PW" -e "$BAD" && fail "a password is in ps: $(ps -o args= -p "$p")"
done
for f in "$T"/*.log; do grep -qF -e "$PW" -e "$BAD" -e "$OLDPW" "$f" && fail "a password is in $(basename "$f")"; done
page=$(curl -s "http://127.0.0.1:$MP/metrics")   # whole: with pipefail a SIGPIPE would hide a match
[ -n "$page" ] || fail "no /metrics page"
grep -qF "$PW" <<<"$page" && fail "the password is in /metrics"
ok "the password is in no log, no ps line and no metric"
