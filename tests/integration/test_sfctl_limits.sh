# What a new user runs into at the edges (issue #24): sfctl refuses a request
# over the protocol's caps before sending it, naming the limit (exit 2, not
# "no answer" and exit 3); others' text (run names, worker ids, class lists,
# the coordinator's errors) reaches the terminal escaped, never as control
# characters; JSON with text after it or a key twice is refused; and the
# daemons refuse at start a data_dir or checkpoint_dir they cannot write and
# a device that does not exist.
. "$(dirname "$0")/lib.sh"
start_redis
start_coordinator
ESC=$'\e'
# Fails when TEXT (a command's output) holds a control character other than
# a newline or a tab: an ESC, a BEL, …
no_controls() {  # WHAT TEXT
    if printf '%s' "$2" | tr -d '\n\t' | LC_ALL=C grep -q '[[:cntrl:]]'; then
        fail "$1 printed control characters: $(printf '%s' "$2" | od -c | head -5)"
    fi
}
NOBODY="ipc://$T/nobody.ipc"

# ---- the protocol's limits, checked before sending ---------------------------
id65=$(printf 'r%064d' 0)
id64=$(printf 'r%063d' 0)
for cmd in status cancel watch; do
    expect 2 "run id is 65 bytes, over the protocol's limit of 64 bytes" "$BIN/sfctl" "$cmd" "$id65"
done
# One byte less is the coordinator's to answer: there is no such run.
expect 2 "no run" "$BIN/sfctl" status "$id64"
# Specs over 8 MiB (a payload far too large): one that the coordinator would
# refuse, and one over the 16 MiB frame that sfctl could not even send
# ("cannot send to the coordinator", exit 3, before the check).  Then one
# just under 8 MiB, which the coordinator reads and refuses for its own
# reason (the 4 MiB cap on a job's payload): an answer, never a silence.
python3 - "$T" <<'PY'
import json, sys
for name, size in (("big", 9 << 20), ("huge", 20 << 20), ("under", (8 << 20) - 200)):
    json.dump({"kind": "noop", "classes": ["goldfish"], "payload": {"pad": "x" * size}},
              open(f"{sys.argv[1]}/{name}.json", "w"))
PY
for f in big huge; do
    expect 2 "the run spec is [0-9]* bytes, over the protocol's limit of 8388608 bytes (8 MiB" \
        "$BIN/sfctl" submit --spec "$T/$f.json"
done
out=$("$BIN/sfctl" --timeout 20000 submit --spec "$T/under.json" 2>&1); rc=$?
[ $rc -ne 3 ] || fail "a spec under 8 MiB got no answer: $out"
echo "$out" | grep -q "protocol's limit" && fail "a spec under 8 MiB was refused by sfctl: $out"
"$BIN/sfctl" stats >/dev/null || fail "the coordinator stopped answering"
ok "limits: run ids over 64 bytes and specs over 8 MiB refused by sfctl, exit 2, naming the limit"

# ---- others' text on the terminal ------------------------------------------
name="evil${ESC}]0;pwned"$'\a'"${ESC}[31mred"$'\n'"line"
run=$("$BIN/sfctl" submit --classes goldfish --kind noop --name "$name") || fail "submit with a hostile name"
want='evil\x1b]0;pwned\x07\x1b[31mred\nline'
for cmd in runs "status $run"; do
    # shellcheck disable=SC2086
    out=$("$BIN/sfctl" $cmd 2>&1) || fail "sfctl $cmd: $out"
    no_controls "sfctl $cmd" "$out"
    echo "$out" | grep -qF "$want" || fail "sfctl $cmd does not show the name escaped: $out"
done
out=$("$BIN/sfctl" top --once --redis "unix:$T/redis.sock" 2>&1) || fail "sfctl top: $out"
no_controls "sfctl top --once" "$out"
echo "$out" | grep -qF 'evil\x1b]0;pwned' || fail "sfctl top does not show the name escaped: $out"
# --json stays JSON: the control characters as JSON escapes.
"$BIN/sfctl" runs --json | grep -qF 'evil\u001b]0;pwned\u0007' || fail "runs --json"
# A worker's id.
"$BIN/sf-worker" --coordinator "$WEP" --worker-id "w${ESC}[2Jx" --kinds noop --heartbeat-ms 200 \
    >>"$T/worker-esc.log" 2>&1 &
PIDS+=($!)
disown $!
for _ in $(seq 100); do "$BIN/sfctl" workers --json | grep -q 'w\\u001b\[2Jx' && break; sleep 0.1; done
out=$("$BIN/sfctl" workers 2>&1)
no_controls "sfctl workers" "$out"
echo "$out" | grep -qF 'w\x1b[2Jx' || fail "sfctl workers does not show the id escaped: $out"
# The coordinator's errors echo what they refuse.
out=$("$BIN/sfctl" status "r${ESC}[2J" 2>&1); rc=$?
[ $rc = 2 ] || fail "status of an unknown run: exit $rc: $out"
no_controls "sfctl status's error" "$out"
echo "$out" | grep -qF 'r\x1b[2J' || fail "status's error does not show the id escaped: $out"
out=$("$BIN/sfctl" submit --classes goldfish --kind noop --set "bo${ESC}[8mgus=1" 2>&1); rc=$?
[ $rc = 2 ] || fail "unknown spec key: exit $rc: $out"
no_controls "sfctl submit's error" "$out"
echo "$out" | grep -qF "unknown key 'bo\\x1b[8mgus'" || fail "submit's error: $out"
# A class list with a control character: refused by line, not echoed.
printf 'tench\ngold\033[31mfish\n' >"$T/esc.txt"
expect 2 "line 2: control character 0x1b" "$BIN/sfctl" submit --classes "$T/esc.txt" --kind noop
no_controls "a class list's error" "$("$BIN/sfctl" submit --classes "$T/esc.txt" --kind noop 2>&1)"
ok "terminal: names, worker ids, errors and class lists shown escaped"

# ---- strict JSON -----------------------------------------------------------
expect 2 "--payload: key 'ms' is given twice" \
    "$BIN/sfctl" submit --classes goldfish --kind sleep --payload '{"ms": 1, "ms": 2}'
expect 2 "--payload: unexpected text after the JSON value at line 1, column 11" \
    "$BIN/sfctl" submit --classes goldfish --kind sleep --payload '{"ms": 1} {"ms": 2}'
expect 2 "--set ppo: key 'updates' is given twice" \
    "$BIN/sfctl" submit --classes goldfish --set 'ppo={"updates": 1, "updates": 2}'
printf '{"kind": "noop", "classes": ["goldfish"], "kind": "sleep"}\n' >"$T/dup-spec.json"
expect 2 "--spec $T/dup-spec.json: key 'kind' is given twice" "$BIN/sfctl" submit --spec "$T/dup-spec.json"
printf '{"kind": "noop", "classes": ["goldfish"]}\n}\n' >"$T/trail-spec.json"
expect 2 "trail-spec.json: unexpected text after the JSON value at line 2" \
    "$BIN/sfctl" submit --spec "$T/trail-spec.json"
printf '{"heartbeat_ms": 500, "heartbeat_ms": 900}\n' >"$T/dup.json"
expect 2 "config file '$T/dup.json': key 'heartbeat_ms' is given twice" \
    timeout 10 "$BIN/sf-coordinator" --config "$T/dup.json" --redis "unix:$T/nobody.sock" \
    --client-endpoint "ipc://$T/c2.ipc" --worker-endpoint "ipc://$T/w2.ipc"
printf '{"slots": 1}\n{"slots": 2}\n' >"$T/trail.json"
expect 2 "config file '$T/trail.json': unexpected text after the JSON value at line 2" \
    timeout 10 "$BIN/sf-worker" --config "$T/trail.json" --coordinator "$NOBODY"
ok "strict JSON: --payload, --set, --spec and config files"

# ---- the daemons' folders and device, at start ----------------------------
: >"$T/afile"
expect 2 "config key 'data_dir' = '$T/afile': not a folder" \
    timeout 10 "$BIN/sf-worker" --coordinator "$NOBODY" --data-dir "$T/afile"
expect 2 "config key 'data_dir' = '$T/afile/sub'" \
    timeout 10 "$BIN/sf-worker" --coordinator "$NOBODY" --data-dir "$T/afile/sub"
expect 2 "config key 'data_dir' = '/proc/sf-data': cannot be made in '/proc'" \
    timeout 10 "$BIN/sf-worker" --coordinator "$NOBODY" --data-dir /proc/sf-data
if have_learner "the learner's checkpoint_dir and the device checks"; then
    LFLAGS=(--redis "unix:$T/redis.sock" --endpoint "ipc://$T/l.ipc")
    expect 2 "config key 'checkpoint_dir' = '$T/afile': not a folder" \
        timeout 20 "$BIN/sf-learner" "${LFLAGS[@]}" --checkpoint-dir "$T/afile"
    expect 2 "config key 'checkpoint_dir' = '/proc/sf-ckpt': cannot be made in '/proc'" \
        timeout 20 "$BIN/sf-learner" "${LFLAGS[@]}" --checkpoint-dir /proc/sf-ckpt
    # cuda:64: no machine has that many GPUs, so this holds with CUDA too.
    for d in sf-worker sf-learner; do
        flags=(--coordinator "$NOBODY" --data-dir "$T/data")
        [ "$d" = sf-learner ] && flags=("${LFLAGS[@]}" --checkpoint-dir "$T/ckpt")
        expect 2 "config key 'device'.*cuda:64" timeout 20 "$BIN/$d" "${flags[@]}" --device cuda:64
        expect 2 "config key 'device'.*bad device 'gpu0'" timeout 20 "$BIN/$d" "${flags[@]}" --device gpu0
    done
fi
# What was refused left nothing behind.
[ ! -e "$T/afile/sub" ] && [ ! -e "$T/data" ] && ! compgen -G "$T/.sf-write-check.*" >/dev/null ||
    fail "a refused start left files behind"
ok "daemons: unusable data_dir, checkpoint_dir and device refused at start, exit 2"
