# The fault drill, short (tools/faults.py --short; `make test-faults` runs it
# for 5 minutes): under a steady load of sleep runs and a small method run,
# 60 s of SIGKILL and SIGSTOP/SIGCONT of random workers, the coordinator, the
# learner and redis-server (AOF on, restarted); then every accepted job is
# done exactly once in Redis, every run completed, the dataset's manifest and
# images match one to one, and the counters add up.
. "$(dirname "$0")/lib.sh"
args=(--short --bin "$BIN")
if [ -x "$BIN/sf-learner" ]; then args+=(--models "$(test_models)"); else args+=(--no-method); fi
out=$(python3 "$SF_ROOT/tools/faults.py" "${args[@]}" 2>&1)
rc=$?
echo "$out"
[ $rc = 0 ] || fail "the fault drill found a problem (see above)"
ok "$(echo "$out" | tail -n 1)"
