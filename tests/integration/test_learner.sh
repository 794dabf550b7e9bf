# sf-learner on its own: it reads a run's PPO settings from Redis, serves
# the policy as chunked CRC-checked images, runs a PPO update per batch of
# rollouts, publishes numbered versions, drops stale rollouts, reports to
# Redis, and resumes from its checkpoint after a SIGKILL.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
start_redis
R hset sf:run:r1 spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"seed":1,"ppo":{"updates":3,"batch_size":8,"mini_batch_size":4,"max_staleness":1}}' >/dev/null
FW="$ITEST/sf_fake_worker"
start_learner
out=$("$FW" "$LEP" r1 get 0) || fail "policy fetch: $out"
echo "$out" | grep -q "^version 0 done 0 bytes [0-9]* tensors [0-9]" || fail "first image: $out"
# Three batches of eight make three updates.
for v in 0 1 2; do
    out=$("$FW" "$LEP" r1 send $v 8 $v 64) || fail "send: $out"
    echo "$out" | grep -q "^accepted 8 stale 0" || fail "batch $v: $out"
    out=$("$FW" "$LEP" r1 get $((v + 1))) || fail "waiting for version $((v + 1)): $out"
    echo "$out" | grep -q "^version $((v + 1)) " || fail "version after batch $v: $out"
done
echo "$out" | grep -q "done 1" || fail "the learner did not say it reached the target: $out"
# Rollouts from a policy two versions behind are stale (max_staleness 1).
out=$("$FW" "$LEP" r1 send 1 8 9 64); echo "$out" | grep -q "^accepted 0 stale 8 version 3" || fail "stale: $out"
[ "$(R hget sf:run:r1:learner updates)" = 3 ] || fail "learner hash: $(R hgetall sf:run:r1:learner)"
[ "$(R hget sf:run:r1:learner done)" = 1 ] || fail "learner done flag"
[ "$(R xlen sf:run:r1:ppo)" = 3 ] || fail "ppo curve has $(R xlen sf:run:r1:ppo) points"
R xrange sf:run:r1:ppo - + | grep -q kl_coef || fail "ppo curve fields"
# This worker checks no rollout on the image side: a count of 0 and empty
# values, never a score of 0.
[ "$(R hget sf:run:r1:learner image_checked)" = 0 ] && [ "$(R hexists sf:run:r1:learner image_score)" = 1 ] &&
    [ -z "$(R hget sf:run:r1:learner image_score)" ] && [ -z "$(R hget sf:run:r1:learner faithful)" ] ||
    fail "image check without checked rollouts: $(R hgetall sf:run:r1:learner)"
[ -s "$T/ckpt/r1/policy.safetensors" ] || fail "no checkpoint"
ok "three PPO updates from rollouts, versions published, stale rollouts dropped"

# The run uses the rollouts' own log-probs (max_staleness above 0): rollouts
# without them are refused whole, naming the setting.
out=$("$FW" "$LEP" r1 send-bare 3 4 9 64)
echo "$out" | grep -q "^accepted 0 stale 0 version 3 error .*ppo.use_rollout_logprobs.*rollout 0 has 0 log-probs" ||
    fail "rollouts without log-probs: $out"
[ "$(R hget sf:run:r1:learner received)" = 24 ] || fail "received: $(R hget sf:run:r1:learner received)"
ok "rollouts without the behaviour policy's log-probs are refused, naming the setting"

kill -9 "$LPID"
start_learner
out=$("$FW" "$LEP" r1 get 0) || fail "fetch after restart: $out"
echo "$out" | grep -q "^version 3 " || fail "not resumed from the checkpoint: $out"
grep -q "resumed from checkpoint at version 3" "$T/learner.log" || fail "no resume message"
ok "the learner resumes from its checkpoint after SIGKILL"

out=$("$FW" "$LEP" r9 get 0); [ $? = 3 ] || fail "unknown run: $out"
echo "$out" | grep -q "no run r9" || fail "unknown run message: $out"
R hset sf:run:r2 spec '{"policy":"nonexistent/policy"}' >/dev/null
out=$("$FW" "$LEP" r2 get 0); echo "$out" | grep -q "cannot load the policy" || fail "bad policy path: $out"
# A spec written to Redis directly gets the coordinator's rules too.
R hset sf:run:r3 spec '{"policy":"/etc/passwd"}' >/dev/null
out=$("$FW" "$LEP" r3 get 0); echo "$out" | grep -q "must be a path inside the learner's models_dir" ||
    fail "absolute policy path: $out"
R hset sf:run:r4 spec '{"policy_config":{"n_layer":1},"ppo":{"learnig_rate":0.1}}' >/dev/null
out=$("$FW" "$LEP" r4 get 0); echo "$out" | grep -q "in 'ppo', unknown key 'learnig_rate'" ||
    fail "unknown ppo key: $out"
ok "bad runs get a clear error"

# Two runs with a batch waiting at the same moment: their updates take turns
# (one at a time, each with the learner's threads) and both reach their
# targets; neither waits for the other's whole training.
for r in r5 r6; do
    R hset sf:run:$r spec '{"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":32,"vocab_size":64},"seed":2,"ppo":{"updates":2,"batch_size":8,"mini_batch_size":4,"max_staleness":1}}' >/dev/null
    out=$("$FW" "$LEP" $r get 0) || fail "$r: policy fetch: $out"
done
for v in 0 1; do
    for r in r5 r6; do
        out=$("$FW" "$LEP" $r send $v 8 $v 64) || fail "$r send: $out"
        echo "$out" | grep -q "^accepted 8 stale 0" || fail "$r batch $v: $out"
    done
    for r in r5 r6; do
        out=$("$FW" "$LEP" $r get $((v + 1))) || fail "$r waiting for version $((v + 1)): $out"
        echo "$out" | grep -q "^version $((v + 1)) " || fail "$r version after batch $v: $out"
    done
done
for r in r5 r6; do [ "$(R hget sf:run:$r:learner done)" = 1 ] || fail "$r did not reach its target"; done
ok "two runs' updates take turns and both reach their targets"
