# The fault drill, short (tools/faults.py --short; `make test-faults` runs it
# for 5 minutes): Redis (the shipped appendfsync always), the coordinator, the
# learner and 3 workers, each a host in its own network namespace over TCP,
# under a steady load of sleep runs and a small method run; 60 s of random
# faults: SIGKILL and SIGSTOP/SIGCONT of every daemon, partitions of a worker,
# of the learner, of Redis and of the coordinator from Redis, a worker's link
# down, and a window of 1% packet loss on every link.  Then exactly-once is
# judged against the workers' ledger (every job of every run has one accepted
# effect that a worker recorded), counters equal the done bitmap, and the
# dataset's manifest and images match one to one.  Where namespaces cannot be
# made, the process faults run alone over unix sockets, and the test then
# reports itself skipped (the network half never ran).
. "$(dirname "$0")/lib.sh"
args=(--short --bin "$BIN")
if [ -x "$BIN/sf-learner" ]; then args+=(--models "$(test_models)"); else args+=(--no-method); fi
out=$(python3 "$SF_ROOT/tools/faults.py" "${args[@]}" 2>&1)
rc=$?
if [ $rc = 77 ]; then
    why=$(echo "$out" | tail -n 1)
    echo "$why"
    out=$(python3 "$SF_ROOT/tools/faults.py" --local "${args[@]}" 2>&1)
    rc=$?
    echo "$out"
    [ $rc = 0 ] || fail "the fault drill (process faults, one host) found a problem (see above)"
    skip "network faults not run ($why); the process faults passed on one host"
fi
echo "$out"
[ $rc = 0 ] || fail "the fault drill found a problem (see above)"
ok "$(echo "$out" | tail -n 1)"
