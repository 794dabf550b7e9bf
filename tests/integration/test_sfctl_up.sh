# sfctl up / down on one directory (#24): a second `up` on a live directory
# is refused and starts nothing (a second redis-server would share the AOF),
# and of `up`s started at once only one starts; `down` signals only
# processes that are still the cluster's (never a PID that an edited or
# old-format pids file lists and that now belongs to someone else); a worker
# that exits during start-up (a mistyped flag) makes `up` fail, saying why,
# and leaves nothing running; a stale pids file (dead PIDs, a PID reused)
# does not block `up`.
. "$(dirname "$0")/lib.sh"

# The daemons `up` starts are nobody's children here: every one has a path
# in its directory, under $T, among its arguments, and that is how this test
# finds (and on every exit path kills) its own, and only its own.
ours() { pgrep -f -- "$T/"; }
count() { pgrep -f -- "$1.*$2/" | wc -l; }  # NAME DIR: how many NAME run for DIR
up_cleanup() {
    local rc=$? p
    for p in $(ours); do kill -9 "$p" 2>/dev/null; done
    (exit $rc)
    cleanup
}
trap up_cleanup EXIT
[ -n "${SF_KEEP:-}" ] && trap - EXIT

# Waits until nothing of DIR runs.
wait_none() {  # DIR
    for _ in $(seq 100); do [ "$(pgrep -f -- "$1/" | wc -l)" = 0 ] && return 0; sleep 0.1; done
    fail "processes of $1 still run: $(pgrep -af -- "$1/")"
}
up() { "$BIN/sfctl" up --workers 1 --detach "$@"; }
pid_of() { pgrep -f -- "$1.*$2/" | head -n 1; }  # NAME DIR

sleep 300 &
SLEEPER=$!
disown "$SLEEPER"
PIDS+=("$SLEEPER")

# 1. A second `up` on a live directory is refused, naming it and the PIDs,
#    and leaves the first cluster as it was.
D="$T/c"
up --dir "$D" >"$T/up1.out" 2>&1 || fail "first up: $(cat "$T/up1.out")"
redis=$(pid_of redis-server "$D")
[ -n "$redis" ] || fail "no redis-server for $D after up"
out=$(up --dir "$D" 2>&1); rc=$?
[ "$rc" = 1 ] || fail "second up on a live directory exited $rc, expected 1: $out"
echo "$out" | grep -q "already running in $D" || fail "the refusal does not name the directory: $out"
echo "$out" | grep -q "redis PID $redis" || fail "the refusal does not name the live redis-server (PID $redis): $out"
[ "$(count redis-server "$D")" = 1 ] || fail "$(count redis-server "$D") redis-servers run on $D"
[ "$(count sf-coordinator "$D")" = 1 ] || fail "$(count sf-coordinator "$D") coordinators run for $D"
grep -q "^$redis " "$D/pids" || fail "the refused up rewrote $D/pids: $(cat "$D/pids")"
"$BIN/sfctl" --coordinator "ipc://$D/clients.ipc" workers | grep -q "^local/0" ||
    fail "the first cluster no longer answers"
ok "a second up on a live directory is refused and starts nothing"

# 2. Four `up`s at once on a fresh directory: one starts, the others are
#    refused.  (Without the lock, some of them find the directory free.)
D2="$T/r"
racers=()
for i in 1 2 3 4; do
    up --dir "$D2" >"$T/race-$i.out" 2>&1 &
    racers+=($!)
done
started=0
for i in 1 2 3 4; do
    wait "${racers[$((i - 1))]}"; rc=$?
    case $rc in
        0) started=$((started + 1)) ;;
        1) ;;
        *) fail "up $i of 4 at once exited $rc: $(cat "$T/race-$i.out")" ;;
    esac
done
[ "$started" = 1 ] || fail "$started of 4 ups at once said they started: $(cat "$T"/race-*.out)"
[ "$(count redis-server "$D2")" = 1 ] || fail "$(count redis-server "$D2") redis-servers run on $D2"
[ "$(count sf-coordinator "$D2")" = 1 ] || fail "$(count sf-coordinator "$D2") coordinators run for $D2"
"$BIN/sfctl" down --dir "$D2" >/dev/null || fail "down after the race"
wait_none "$D2"
ok "ups started at once start one cluster"

# 3. `down` with the worker's line edited to name an unrelated process (the
#    sleeper): the sleeper lives, the rest of the cluster stops.
worker=$(pid_of sf-worker "$D")
[ -n "$worker" ] || fail "no worker for $D"
sed -i "s/^$worker\\b/$SLEEPER/" "$D/pids"
grep -q "^$SLEEPER\\b" "$D/pids" || fail "cannot edit $D/pids: $(cat "$D/pids")"
out=$("$BIN/sfctl" down --dir "$D" 2>&1) || fail "down: $out"
kill -0 "$SLEEPER" 2>/dev/null || fail "down killed PID $SLEEPER, an unrelated process its pids file listed: $out"
echo "$out" | grep -q "skipped.*PID $SLEEPER" || fail "down did not say it skipped PID $SLEEPER: $out"
[ "$(count redis-server "$D")" = 0 ] || fail "down left redis-server running"
kill "$worker" 2>/dev/null
wait_none "$D"
# An old pids file (a PID alone per line) cannot be checked: skipped, said.
echo "$SLEEPER" >"$D/pids"
out=$("$BIN/sfctl" down --dir "$D" 2>&1); rc=$?
kill -0 "$SLEEPER" 2>/dev/null || fail "down killed PID $SLEEPER from an old-format pids file: $out"
[ "$rc" = 1 ] || fail "down with an old-format pids file naming a live process exited $rc, expected 1: $out"
echo "$out" | grep -q "skipped PID $SLEEPER.*old format" || fail "down did not say why it skipped $SLEEPER: $out"
rm -f "$D/pids"
ok "down signals only what is still the cluster's"

# 4. A stale pids file does not block `up`: a cluster killed outright (its
#    PIDs dead, its sockets left behind), one PID since reused (the sleeper).
up --dir "$D" >"$T/up2.out" 2>&1 || fail "up: $(cat "$T/up2.out")"
for p in $(pgrep -f -- "$D/"); do kill -9 "$p"; done
wait_none "$D"
redis=$(awk '$3 == "redis" { print $1 }' "$D/pids")
[ -n "$redis" ] && sed -i "s/^$redis\\b/$SLEEPER/" "$D/pids"
grep -q "^$SLEEPER\\b" "$D/pids" || fail "cannot edit $D/pids: $(cat "$D/pids")"
out=$(up --dir "$D" 2>&1) || fail "up refused a directory whose pids file is stale: $out"
echo "$out" | grep -q "cluster up" || fail "up after a stale pids file: $out"
[ "$(count redis-server "$D")" = 1 ] || fail "$(count redis-server "$D") redis-servers run on $D"
kill -0 "$SLEEPER" 2>/dev/null || fail "up killed the process that reused a PID"
"$BIN/sfctl" down --dir "$D" >/dev/null || fail "down"
wait_none "$D"
ok "a stale pids file does not block up"

# 5. A mistyped flag (passed to every worker) makes each worker exit: `up`
#    fails, names the worker and its complaint, and leaves nothing behind.
D3="$T/t"
out=$(up --dir "$D3" --worker 3 2>&1); rc=$?
[ "$rc" = 1 ] || fail "up with a worker that exits at start-up exited $rc, expected 1: $out"
echo "$out" | grep -q "worker-0 (PID [0-9]*) exited with status" || fail "up did not name the worker that exited: $out"
echo "$out" | grep -q "unknown option '--worker'" || fail "up did not show the worker's complaint: $out"
echo "$out" | grep -q "cluster up" && fail "up said 'cluster up' for a cluster without its worker: $out"
wait_none "$D3"
[ -e "$D3/pids" ] && fail "a failed up left $D3/pids"
ok "a worker that exits during start-up fails up"
