#!/usr/bin/env bash
# The learner's PPO update on the demo's settings, two builds side by side:
# the revision REV (built apart under build/bench-learner/; default 7d1f944,
# the last one before the update's speed-up: the straightforward path,
# torch::optim::Adam) and the working tree.  Both run the working tree's benchmark
# (bench_ml_gpt2 --learner: batches of 32 rollouts sampled by the shipped
# world policy, minibatches of 8, 4 epochs, learning rate 2e-4, beta 0.03,
# the prompt baseline, the rollouts' own log-probs; it times sf_ppo_step(),
# the call the learner's update job makes), in alternating order, ROUNDS
# times, so that a machine shared with other work slows both alike.  Prints
# each run's seconds per update (wall time, and the process's CPU time, which
# waiting for a busy core does not inflate), then the median of each build
# and the ratio.
#   tools/bench_learner.sh [--curve N] [REV] [ROUNDS] [UPDATES]
# --curve N then runs the demo's PPO run (tools/demo_settings.sh, seed 1, N
# updates) three times, one after the other: on a one-worker cluster of each
# build (one worker keeps the rollouts in a fixed order, so these two differ
# only by what the builds compute), and on a two-worker cluster of the base
# build (the demo's own setting: the same code and seed, the rollouts'
# arrival order left to chance), the noise two demo runs of one build show.
# It prints the three curves side by side in windows of 25 updates (mean
# score, KL, entropy, nonsense share, each with its standard error), how far
# the new build's curve is from the base's against how far the base's two
# runs are from each other, and each run's PPO-phase time and its workers'
# busy share in it.
# SF_BUILD names the working tree's build folder (default build); SF_THREADS
# the intra-op threads (default 1); SF_MODELS the models folder (models).
set -euo pipefail
cd "$(dirname "$0")/.."
CURVE=0
if [ "${1:-}" = --curve ]; then
    CURVE=${2:?--curve needs a number of updates}
    shift 2
fi
REV=$(git rev-parse --verify "${1:-7d1f944}^{commit}")
ROUNDS=${2:-3}
UPDATES=${3:-5}
NEW_BUILD=${SF_BUILD:-build}
THREADS=${SF_THREADS:-1}
POLICY="$PWD/${SF_MODELS:-models}/policy-sft.safetensors"
VOCAB="$PWD/data/gpt2"
BASE="$PWD/build/bench-learner/${REV:0:12}"

# The revision's sources (git archive: no worktree to register or clean up),
# with the working tree's benchmark, against the revision's libraries.
if [ ! -f "$BASE/.complete" ]; then
    rm -rf "$BASE"
    mkdir -p "$BASE"
    git archive "$REV" | tar -x -C "$BASE"
    touch "$BASE/.complete"
fi
cp tests/bench/bench_ml_gpt2.c "$BASE/tests/bench/bench_ml_gpt2.c"
echo "building $REV in $BASE/build and the working tree in $NEW_BUILD" >&2
make -C "$BASE" -j1 --no-print-directory build/bench/bench_ml_gpt2 >"$BASE/make.log" 2>&1 ||
    { tail -n 20 "$BASE/make.log"; exit 1; }
make -j1 --no-print-directory BUILD="$NEW_BUILD" "$NEW_BUILD/bench/bench_ml_gpt2" >"$BASE/make-new.log" 2>&1 ||
    { tail -n 20 "$BASE/make-new.log"; exit 1; }
if [ "$CURVE" -gt 0 ]; then
    for b in "$BASE" .; do
        bd=build
        [ "$b" = . ] && bd=$NEW_BUILD
        make -C "$b" -j2 --no-print-directory BUILD="$bd" \
            "$bd"/bin/{sf-coordinator,sf-worker,sf-learner,sfctl} >>"$BASE/make.log" 2>&1 ||
            { tail -n 20 "$BASE/make.log"; exit 1; }
    done
fi

run() {  # label binary
    local out
    out=$("$2" --learner "$POLICY" --vocab "$VOCAB" --updates "$UPDATES" --threads "$THREADS")
    local med cpu
    med=$(echo "$out" | awk '/^ppo_update_s/ {print $5}')
    cpu=$(echo "$out" | awk '/^ppo_update_cpu_s/ {print $5}')
    printf '%-5s %s s/update, %s s CPU (medians of %d; %s)\n' "$1" "$med" "$cpu" "$UPDATES" \
        "$(echo "$out" | sed -n 's/^  last update: //p')"
    echo "$1 $med $cpu" >>"$RESULTS"
}
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
echo "base $REV, new: the working tree; $ROUNDS rounds of $UPDATES updates (after 2 warm-up), $THREADS thread(s)"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        run base "$BASE/build/bench/bench_ml_gpt2"
        run new "$NEW_BUILD/bench/bench_ml_gpt2"
    else
        run new "$NEW_BUILD/bench/bench_ml_gpt2"
        run base "$BASE/build/bench/bench_ml_gpt2"
    fi
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, wall, cpu = line.split()
    runs.setdefault(k, []).append((float(wall), float(cpu)))
for i, what in ((0, "wall"), (1, "CPU")):
    b = statistics.median(r[i] for r in runs["base"])
    n = statistics.median(r[i] for r in runs["new"])
    print(f"PPO update, {what} seconds (median of the runs' medians): base {b:.3f}  new {n:.3f}  "
          f"speed-up {b / n:.2f}x")
PY
[ "$CURVE" -gt 0 ] || exit 0

# The demo's PPO run (its classes and settings: tools/demo_settings.sh).
# shellcheck source=tools/demo_settings.sh
. tools/demo_settings.sh
OUTS=$(mktemp -d /tmp/sf-learner-curve.XXXXXX)
trap 'rm -f "$RESULTS"; rm -rf "$OUTS"' EXIT
curve() {  # label bin-dir workers
    local dir="$OUTS/$1" r
    mkdir -p "$dir"
    "$2/sfctl" up --dir "$dir" --workers "$3" --models "${SF_MODELS:-models}" --vocab data/gpt2 --detach >/dev/null
    r=$(SF_COORDINATOR="ipc://$dir/clients.ipc" "$2/sfctl" submit --method shift --classes "$DEMO_CLASSES" \
        --captions-per-class 16 --images-per-caption 1 --reference-images 128 --seed 1 --ppo-updates "$CURVE" \
        "${DEMO_PPO[@]}" --name "bench_learner: $1")
    echo "$1: run $r, $CURVE PPO updates on $3 worker(s)" >&2
    SF_COORDINATOR="ipc://$dir/clients.ipc" "$2/sfctl" watch "$r" --interval 2000 >/dev/null
    redis-cli -s "$dir/redis.sock" XRANGE "sf:run:$r:ppo" - + >"$dir/ppo.txt"
    redis-cli -s "$dir/redis.sock" XRANGE "sf:run:$r:events" - + >"$dir/events.txt"
    echo "$3" >"$dir/workers"
    "$2/sfctl" down --dir "$dir" >/dev/null 2>&1 || true
}
curve base "$BASE/build/bin" 1
curve new "$PWD/$NEW_BUILD/bin" 1
curve base-2w "$BASE/build/bin" 2
/usr/bin/python3 - "$OUTS" <<'PY'
import glob, math, re, statistics, sys

def stream(path):
    rows, cur, lines = [], None, open(path).read().split("\n")
    i = 0
    while i < len(lines):
        if re.match(r"^\d+-\d+$", lines[i]):
            cur = {"_ms": int(lines[i].split("-")[0])}
            rows.append(cur)
            i += 1
        elif cur is not None and i + 1 < len(lines):
            cur[lines[i]] = lines[i + 1]
            i += 2
        else:
            i += 1
    return rows

LABELS = ("base", "new", "base-2w")
runs = {}
for k in LABELS:
    d = f"{sys.argv[1]}/{k}"
    ppo = [{a: float(b) for a, b in r.items() if re.match(r"^-?[0-9.e+-]+$", str(b))} for r in stream(d + "/ppo.txt")]
    ev = stream(d + "/events.txt")
    def at(kind, detail):
        return next((r["_ms"] for r in ev if r.get("type") == kind and r.get("detail", "").startswith(detail)), None)
    phase = (at("phase_done", "rollout") - at("phase_done", "embed")) / 1000
    busy = 0.0
    for log in glob.glob(d + "/worker-*.log"):
        m = re.findall(r"busy by kind: (.*)", open(log).read())
        if m:
            busy += sum(float(s) for kk, s in re.findall(r"([a-z_-]+) ([0-9.]+) s / \d+ jobs", m[-1]) if kk == "rollout")
    runs[k] = (ppo, phase, busy, int(open(d + "/workers").read()))
W = 25
keys = [k for k in ("mean_score", "kl", "entropy", "nonsense") if k in runs["base"][0][0]]
n = min(len(runs[k][0]) for k in LABELS)
print(f"the demo's PPO curve, windows of {W} updates, mean (standard error): base | new | base-2w")
gap = {p: {k: [] for k in keys} for p in ("new", "base-2w")}
for w0 in range(0, n, W):
    cells = []
    for key in keys:
        v = {}
        for k in LABELS:
            xs = [r[key] for r in runs[k][0][w0:w0 + W] if key in r]
            v[k] = statistics.mean(xs), statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0
        for p in gap:
            gap[p][key].append(abs(v[p][0] - v["base"][0]))
        cells.append(f"{key} " + " | ".join(f"{v[k][0]:.3f}({v[k][1]:.3f})" for k in LABELS))
    print(f"  updates {w0:3d}-{min(n, w0 + W) - 1:3d}: " + "   ".join(cells))
print("distance from the base curve, mean (largest) over the windows:")
for key in keys:
    print(f"  {key:10s} new {statistics.mean(gap['new'][key]):.3f} ({max(gap['new'][key]):.3f})   "
          f"base-2w, the same build run again {statistics.mean(gap['base-2w'][key]):.3f} ({max(gap['base-2w'][key]):.3f})")
for k in LABELS:
    ppo, phase, busy, w = runs[k]
    print(f"{k:7s}: PPO phase {phase:.1f} s for {len(ppo)} updates ({phase / max(1, len(ppo)):.2f} s an update); "
          f"rollout jobs {busy:.1f} s, the workers busy {100 * busy / (phase * w):.1f}% of {w} x the phase")
b, nw = runs["base"][1], runs["new"][1]
print(f"PPO phase on one worker: base {b:.1f} s, new {nw:.1f} s, speed-up {b / nw:.2f}x")
PY
