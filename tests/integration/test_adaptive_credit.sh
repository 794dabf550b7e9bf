# Adaptive credit (the default, prefetch 0; docs/protocol.md): while a run
# of tiny noop jobs streams to the workers, a higher-priority run of 2-second
# sleep jobs arrives.  No worker may ever hold more of the sleep jobs than
# its slots plus one — read from the run's leases in Redis, which name the
# worker of each job out — however much tiny work it held a moment before,
# and the tiny run still finishes, every job once.  Two workers of one slot
# and one of two.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200
start_workers 2
"$BIN/sf-worker" --coordinator "$WEP" --worker-id w2 --heartbeat-ms 200 --slots 2 >>"$T/worker-2.log" 2>&1 &
PIDS+=($!)
disown $!
for _ in $(seq 300); do
    [ "$("$BIN/sfctl" workers --json | grep -o '"credit_mode":"adaptive"' | wc -l)" = 3 ] && break
    sleep 0.1
done
[ "$("$BIN/sfctl" workers --json | grep -o '"credit_mode":"adaptive"' | wc -l)" = 3 ] ||
    fail "not three workers with adaptive credit: $("$BIN/sfctl" workers --json)"
ok "three workers joined with adaptive credit (no --prefetch)"

tiny=$(submit --classes builtin:imagenet-1k --kind noop --items-per-class 200 --name tiny) || fail "submit tiny"
for _ in $(seq 300); do [ "$(R hget "sf:run:$tiny" done)" -ge 5000 ] 2>/dev/null && break; sleep 0.05; done
[ "$(R hget "sf:run:$tiny" done)" -ge 5000 ] || fail "the tiny run did not get going: $(R hget "sf:run:$tiny" done) done"
slow=$(submit --classes goldfish,tench,junco --kind sleep --payload '{"ms":2000}' --items-per-class 4 --priority 5 \
       --name slow) || fail "submit slow"

declare -A most=([w0]=0 [w1]=0 [w2]=0)
samples=0
while [ "$(R hget "sf:run:$slow" state)" != done ]; do
    # The leases hash maps job -> "worker attempt deadline".
    while read -r n w; do
        [ -n "$w" ] || continue
        [ "$n" -gt "${most[$w]:-0}" ] && most[$w]=$n
    done < <(R hgetall "sf:run:$slow:leases" | awk 'NR % 2 == 0 {print $1}' | sort | uniq -c)
    samples=$((samples + 1))
    [ "$samples" -lt 1200 ] || fail "the sleep run is not done after 1200 samples: $(R hgetall "sf:run:$slow")"
    sleep 0.02
done
echo "most sleep jobs held: w0 ${most[w0]}, w1 ${most[w1]} (1 slot each), w2 ${most[w2]} (2 slots); $samples samples"
[ "${most[w0]}" -le 2 ] && [ "${most[w1]}" -le 2 ] && [ "${most[w2]}" -le 3 ] ||
    fail "a worker held more 2-s jobs than its slots + 1: w0 ${most[w0]}, w1 ${most[w1]}, w2 ${most[w2]}"
[ "${most[w0]}" -ge 1 ] && [ "${most[w1]}" -ge 1 ] && [ "${most[w2]}" -ge 2 ] ||
    fail "the sleep jobs were not spread over the workers: w0 ${most[w0]}, w1 ${most[w1]}, w2 ${most[w2]}"
check_all_done "$slow" 12
ok "no worker held more 2-s jobs than its slots + 1"

wait_state "$tiny" done 120
check_all_done "$tiny" 200000
ok "the tiny run finished, every job once"
