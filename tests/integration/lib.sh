# lib.sh: what every integration test shares.  Source it; it makes a private
# directory, and on every exit path stops every process it started and
# removes the directory.
#   start_redis; start_coordinator [flags]; start_workers N [flags]
#   submit ARGS…  -> prints the run id;  wait_state RUN STATE [SECONDS]
#   R …           -> redis-cli on the private socket
#   fail MSG; ok MSG; skip REASON (exit 77)
set -uo pipefail
BIN=${SF_BIN:?SF_BIN must point at the built binaries (make test sets it)}
ITEST=${SF_ITEST:-$(dirname "$BIN")/itest}
T=$(mktemp -d /tmp/sf-it.XXXXXX)
# The tests' Python helpers (safetensors_read.py) import from here.
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
PIDS=()
COORD_PID=
REDIS_PID=

cleanup() {
    local rc=$?
    for p in "${PIDS[@]}" $COORD_PID $REDIS_PID; do kill -9 "$p" 2>/dev/null; done
    # A test that passed but left some of its checks out is skipped, not
    # passed: its last line names what it left out (tests/run.sh shows it).
    if [ $rc -eq 0 ] && [ -s "$T/.skipped-parts" ]; then
        echo "SKIP: ran all but: $(paste -sd ';' "$T/.skipped-parts")"
        rc=77
    fi
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -d "$T" ]; then
        for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
[ -n "${SF_KEEP:-}" ] && trap - EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
# A test that cannot run here says why and exits 77: tests/run.sh counts it
# as skipped, never as passed (and in CI as failed).
skip() { echo "SKIP: $*"; exit 77; }
ok() { echo "ok - $*"; }
# Leaves one part of a test out, saying why: the test goes on, and at its end
# counts as skipped (exit 77) instead of passed.
skip_part() { echo "SKIP (part): $*"; echo "$*" >>"$T/.skipped-parts"; }
# True when the learner was built (not NO_TORCH=1); otherwise the part that
# needs it, named by WHAT, is skipped.
have_learner() {  # WHAT
    [ -x "$BIN/sf-learner" ] && return 0
    skip_part "$1: built without libtorch (make NO_TORCH=1)"
    return 1
}

R() { redis-cli -s "$T/redis.sock" "$@"; }

start_redis() {
    redis-server --port 0 --unixsocket "$T/redis.sock" --dir "$T" --appendonly yes \
        --appendfsync everysec --maxmemory-policy noeviction --save "" >"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    disown $REDIS_PID
    for _ in $(seq 100); do [ -S "$T/redis.sock" ] && R ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "redis-server did not start"
}

export SF_COORDINATOR="ipc://$T/clients.ipc"
WEP="ipc://$T/workers.ipc"

start_coordinator() {
    "$BIN/sf-coordinator" --redis "unix:$T/redis.sock" --worker-endpoint "$WEP" \
        --client-endpoint "$SF_COORDINATOR" "$@" >>"$T/coordinator.log" 2>&1 &
    COORD_PID=$!
    disown $COORD_PID
    for _ in $(seq 300); do "$BIN/sfctl" --timeout 200 stats >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "coordinator did not answer"
}

start_workers() {  # N [flags…]
    local n=$1; shift
    for i in $(seq 0 $((n - 1))); do
        "$BIN/sf-worker" --coordinator "$WEP" --worker-id "w$i" --heartbeat-ms 200 "$@" >>"$T/worker-$i.log" 2>&1 &
        PIDS+=($!)
        disown $!
    done
    # Generous: a worker loads libtorch at start, slow on a busy 2-core box.
    for _ in $(seq 300); do
        [ "$("$BIN/sfctl" workers --json 2>/dev/null | grep -o '"id"' | wc -l)" -ge "$n" ] && return 0
        sleep 0.1
    done
    fail "workers did not join"
}

submit() { "$BIN/sfctl" submit "$@"; }

wait_state() {  # RUN STATE [SECONDS]
    local run=$1 want=$2 secs=${3:-120} st
    for _ in $(seq $((secs * 10))); do
        st=$(R hget "sf:run:$run" state)
        [ "$st" = "$want" ] && return 0
        sleep 0.1
    done
    fail "run $run is '$st' after ${secs}s, expected '$want'"
}

# Asserts that Redis says every job of RUN is done exactly once.
check_all_done() {  # RUN TOTAL
    local run=$1 total=$2
    [ "$(R hget "sf:run:$run" done)" = "$total" ] || fail "run hash says done=$(R hget "sf:run:$run" done), expected $total"
    [ "$(R bitcount "sf:run:$run:done")" = "$total" ] || fail "done bitmap has $(R bitcount "sf:run:$run:done") bits, expected $total"
    # The count alone would pass a missing job plus a stray bit past total:
    # the first clear bit must lie at or after bit total (so 0..total-1 are
    # all set, and with the count, nothing is set past them).
    local zero; zero=$(R bitpos "sf:run:$run:done" 0)
    [ "$zero" -ge "$total" ] || fail "job $zero of run $run is not done in the bitmap"
    [ "$(R hlen "sf:run:$run:leases")" = "0" ] || fail "$(R hlen "sf:run:$run:leases") leases left behind"
    [ "$(R hget "sf:run:$run" dead)" = "0" ] || fail "dead jobs: $(R hget "sf:run:$run" dead)"
}

# Runs CMD…, expecting exit code CODE and PATTERN in its output.
expect() {  # CODE PATTERN CMD…
    local code=$1 pat=$2 out rc; shift 2
    out=$("$@" 2>&1); rc=$?
    [ "$rc" = "$code" ] || fail "'$*' exited $rc, expected $code: $out"
    echo "$out" | grep -q -- "$pat" || fail "'$*' did not say '$pat': $out"
}

# A free TCP port on loopback (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The value of one metric line (name with its labels, exactly) from a scrape.
metric() {  # PORT 'name{labels}'
    curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}

# Small world models for the method's tests, trained once per build folder
# (sf-train caches them: a second call does nothing).  Prints the folder.
test_models() {
    local m
    m="$(dirname "$BIN")/test-models"
    bash "$(dirname "${BASH_SOURCE[0]}")/train_models.sh" "$BIN" "$m" ||
        fail "cannot train the test models (see $m/train.log)"
    echo "$m"
}

# The learner on the private folder: LEP is its endpoint, LPID its pid.
LEP="ipc://$T/learner.ipc"
start_learner() {  # [flags…]
    "$BIN/sf-learner" --redis "unix:$T/redis.sock" --endpoint "$LEP" --checkpoint-dir "$T/ckpt" --threads 1 "$@" \
        >>"$T/learner.log" 2>&1 &
    LPID=$!
    disown $LPID
    PIDS+=($LPID)
}
