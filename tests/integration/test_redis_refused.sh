# Redis refuses writes for a while (a restarted Redis answers LOADING while it
# reads its AOF; a full one answers OOM): MULTI … EXEC comes back EXECABORT,
# and the coordinator must take none of it as applied — no job counts as done
# while Redis refuses, and once it accepts again the run completes with every
# job done exactly once in Redis.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator --heartbeat-ms 200
start_workers 2 --slots 4 --prefetch 2
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":10}' --items-per-class 30) || fail submit
total=$((86 * 30))
for _ in $(seq 200); do [ "$(R hget sf:run:$run done)" -gt 300 ] 2>/dev/null && break; sleep 0.05; done
# noeviction with a 1-byte limit: Redis refuses every write with OOM.
R config set maxmemory 1 >/dev/null
sleep 0.5
done_json() { "$BIN/sfctl" status "$run" --json | grep -o '"done":[0-9]*' | head -1 | cut -d: -f2; }
d1=$(done_json)
sleep 1.5
d2=$(done_json)
[ -n "$d1" ] && [ "$d1" = "$d2" ] || fail "done moved from $d1 to $d2 while Redis refused every write"
[ "$d2" -lt "$total" ] || fail "the run finished before Redis refused writes; make it longer"
grep -q "a batch was refused (EXECABORT" "$T/coordinator.log" || fail "no message about the refused batch"
R config set maxmemory 0 >/dev/null
wait_state "$run" done 60
check_all_done "$run" "$total"
ok "Redis refused every write for 2 s mid-run: nothing counted done meanwhile; $total jobs done exactly once"
