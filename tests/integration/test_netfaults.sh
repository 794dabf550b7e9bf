# Network faults, one of each at set times (tools/faults.py --scenario):
# Redis, the coordinator, the learner and 3 workers each a host in its own
# network namespace (veths to a bridge, 10.99.0.0/24, TCP), faults by
# nftables rules inside the namespaces and link down/up:
#   - 1% packet loss on every link for 22 s: whole sleep runs start and finish
#     inside it;
#   - the learner cut off for 3 s while a PPO phase runs;
#   - a worker cut off for 0.3 s (less than its 1.5 s liveness) and another
#     for 4 s (more): the coordinator gives the second up, its jobs are
#     applied from other executions, the ones it finished meanwhile (its
#     ledger says so) are not, and it is heard again;
#   - the coordinator cut off from Redis for 3 s: meanwhile it never reports
#     a job done that Redis lacks; Redis cut off from everyone for 2 s;
#   - a worker's link down for 3 s; Redis SIGSTOPped; a worker and Redis
#     SIGKILLed.
# Then every run completes with each job's effect applied exactly once,
# judged against the workers' ledger.  The namespaces carry the drill's pid
# and are removed on every exit path; without root, ip or nft: skipped.
. "$(dirname "$0")/lib.sh"
args=(--scenario --bin "$BIN")
if [ -x "$BIN/sf-learner" ]; then args+=(--models "$(test_models)"); else args+=(--no-method); fi
out=$(python3 "$SF_ROOT/tools/faults.py" "${args[@]}" 2>&1)
rc=$?
[ $rc = 77 ] && skip "$(echo "$out" | tail -n 1)"
echo "$out"
[ $rc = 0 ] || fail "a network fault broke a promise (see above)"
# The drill's namespaces (named in its first line) went with it.
tag=$(echo "$out" | grep -o 'sfdrill[0-9]*' | head -n 1)
[ -n "$tag" ] || fail "the drill did not say which namespaces it made"
left=$(ip netns list | grep "^$tag-")
[ -z "$left" ] || fail "namespaces left behind: $left"
ok "$(echo "$out" | tail -n 1)"
