# sfctl top renders under tmux at 80x24 and 200x50 without garbage: the
# sections are there, no line is wider than the pane, no escape sequence
# leaks into the text, and q quits.
. "$(dirname "$0")/lib.sh"
command -v tmux >/dev/null || fail "tmux is needed (make deps installs it)"
start_redis
start_coordinator
start_workers 2
run=$(submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":50}' --items-per-class 10 --name topview) || fail submit
export TMUX_TMPDIR="$T"
for size in 80x24 200x50; do
    w=${size%x*}; h=${size#*x}
    s="top$w"
    tmux new-session -d -s "$s" -x "$w" -y "$h" "SF_REDIS=unix:$T/redis.sock $BIN/sfctl top --interval 300"
    sleep 1.5
    pane=$(tmux capture-pane -p -t "$s")
    echo "$pane" | grep -q "^shiftforge top" || fail "$size: no title: $pane"
    echo "$pane" | grep -q "^RUNS" || fail "$size: no runs section"
    echo "$pane" | grep -q "^$run .*running\|^$run .*done" || fail "$size: run $run missing: $pane"
    echo "$pane" | grep -q "^WORKERS (2)" || fail "$size: workers section: $pane"
    echo "$pane" | grep -q "^w0 " || fail "$size: worker w0 missing"
    long=$(echo "$pane" | awk -v w="$w" 'length($0) > w' | wc -l)
    [ "$long" = 0 ] || fail "$size: $long lines wider than the pane"
    echo "$pane" | grep -q $'\033\|\[?25\|\[K' && fail "$size: escape sequences in the text"
    [ "$(echo "$pane" | wc -l)" -le "$h" ] || fail "$size: more lines than the pane"
    tmux send-keys -t "$s" q
    sleep 0.8
    tmux has-session -t "$s" 2>/dev/null && { tmux kill-session -t "$s"; fail "$size: q did not quit"; }
done
out=$(SF_REDIS=unix:$T/redis.sock "$BIN/sfctl" top --once) || fail "--once"
echo "$out" | grep -q "topview" || fail "--once output: $out"
ok "sfctl top at 80x24 and 200x50"
