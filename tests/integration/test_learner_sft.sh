# SFT on the learner: a run whose spec has "sft" gets its policy fine-tuned
# on the caption corpus (the world's corpus of its classes, or a JSONL file
# under models_dir) before PPO; progress and loss go to Redis; the SFT'd
# policy is what version 0 is, and a restarted learner does not repeat the
# SFT; a bad corpus fails the run with an error naming the file and line.
. "$(dirname "$0")/lib.sh"
[ -x "$BIN/sf-learner" ] || skip "built without libtorch (make NO_TORCH=1)"
[ -s "$SF_ROOT/data/gpt2/encoder.json" ] || fail "no GPT-2 vocabulary in data/gpt2 (make deps)"
start_redis
mkdir -p "$T/models"
PC='"policy_config":{"n_layer":1,"n_head":2,"n_embd":16,"n_ctx":64,"vocab_size":50257},"seed":3'
PPO='"ppo":{"updates":1,"batch_size":8,"mini_batch_size":4}'
R hset sf:run:r1 spec "{$PC,$PPO,\"classes\":[\"n01498041\",\"junco\"],\"sft\":{\"steps\":60,\"batch_size\":8,\"learning_rate\":0.01}}" >/dev/null
FW="$ITEST/sf_fake_worker"
start_learner --gpt2-vocab "$SF_ROOT/data/gpt2" --models-dir "$T/models"
out=$("$FW" "$LEP" r1 get 0) || fail "policy fetch: $out"
echo "$out" | grep -q "^version 0 done 0 " || fail "first image: $out"
[ "$(R hget sf:run:r1:learner sft_step)" = 60 ] || fail "sft progress: $(R hgetall sf:run:r1:learner)"
[ "$(R hget sf:run:r1:learner sft_steps)" = 60 ] || fail "sft steps: $(R hgetall sf:run:r1:learner)"
grep -q "run r1: SFT of the policy: 60 steps of 8 over 32 captions" "$T/learner.log" ||
    fail "the world corpus of 2 classes should be 32 captions: $(grep SFT "$T/learner.log")"
# The loss must fall well below a uniform guess over 50257 tokens (ln 50257 = 10.8).
line=$(grep "run r1: SFT done: loss" "$T/learner.log") || fail "no SFT summary: $(tail -5 "$T/learner.log")"
python3 - "$line" <<'PY' || fail "SFT did not learn: $line"
import re, sys
a, b = map(float, re.search(r"loss ([0-9.]+) -> ([0-9.]+)", sys.argv[1]).groups())
assert a > 9 and b < a - 3, (a, b)
PY
[ -s "$T/ckpt/r1/sft.safetensors" ] || fail "no sft.safetensors"
ok "the learner fine-tunes the policy on the world corpus of the run's classes before PPO (60 steps, loss falls)"

# A PPO update starts from the SFT'd policy; a restart keeps the SFT.
out=$("$FW" "$LEP" r1 send 0 8 1 50257) || fail "send: $out"
echo "$out" | grep -q "^accepted 8" || fail "rollouts: $out"
out=$("$FW" "$LEP" r1 get 1) || fail "version 1: $out"
kill -9 "$LPID"
rm -f "$T/ckpt/r1/state.json"   # as if killed before the first update
start_learner --gpt2-vocab "$SF_ROOT/data/gpt2" --models-dir "$T/models"
out=$("$FW" "$LEP" r1 get 0) || fail "fetch after restart: $out"
grep -q "run r1: SFT was done before" "$T/learner.log" || fail "the restarted learner did not reuse the SFT"
[ "$(grep -c "run r1: SFT of the policy" "$T/learner.log")" = 1 ] || fail "SFT ran twice"
ok "a restarted learner reuses the finished SFT"

# A JSONL corpus under models_dir.
printf '%s\n' '{"class": "stingray", "caption": "A stingray on a dinner plate"}' '' \
    '{"class": "n01534433", "caption": "A junco made of paper."}' >"$T/models/corpus.jsonl"
R hset sf:run:r2 spec "{$PC,$PPO,\"classes\":[\"stingray\"],\"sft\":{\"steps\":5,\"corpus\":\"corpus.jsonl\"}}" >/dev/null
out=$("$FW" "$LEP" r2 get 0) || fail "r2: $out"
grep -q "run r2: SFT of the policy: 5 steps of 16 over 2 captions" "$T/learner.log" || fail "JSONL corpus: $(grep r2 "$T/learner.log")"
ok "a JSONL corpus file under models_dir"

# Bad corpora: the run fails with a message naming what is wrong.
printf '%s\n' '{"class": "stingray", "caption": "A stingray."}' '{"class": "unicorn", "caption": "A unicorn."}' \
    >"$T/models/bad.jsonl"
R hset sf:run:r3 spec "{$PC,$PPO,\"classes\":[\"stingray\"],\"sft\":{\"steps\":5,\"corpus\":\"bad.jsonl\"}}" >/dev/null
out=$("$FW" "$LEP" r3 get 0); echo "$out" | grep -q "bad.jsonl line 2: unknown class 'unicorn'" || fail "bad class: $out"
R hset sf:run:r4 spec "{$PC,$PPO,\"classes\":[\"stingray\"],\"sft\":{\"steps\":5,\"corpus\":\"missing.jsonl\"}}" >/dev/null
out=$("$FW" "$LEP" r4 get 0); echo "$out" | grep -q "cannot open the corpus .*missing.jsonl" || fail "missing corpus: $out"
R hset sf:run:r5 spec "{$PC,$PPO,\"classes\":[\"stingray\"],\"sft\":{\"steps\":0}}" >/dev/null
out=$("$FW" "$LEP" r5 get 0); echo "$out" | grep -q "in 'sft', 'steps' = 0 is outside" || fail "zero steps: $out"
[ "$(R hget sf:run:r3:learner state)" = failed ] || fail "r3 state: $(R hget sf:run:r3:learner state)"
ok "a bad corpus or bad SFT settings fail the run with a clear error"
