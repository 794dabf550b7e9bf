#!/usr/bin/env bash
# Throughput of the method end to end on a local cluster with N workers (one
# slot each): PPO rollout captions per second, images per second through
# generate + filter, and the share of worker time spent running jobs
# (model code) rather than waiting for them.
#   tools/bench_method.sh [WORKERS] [UPDATES] [IMAGES_PER_CAPTION]
# Phase times come from the run's event stream in Redis; busy shares from the
# workers' own accounting (the lines each prints when it leaves: its busy
# share, and its busy seconds by job kind, which give each phase's share).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/${SF_BUILD:-build}/bin"
WORKERS=${1:-4}
UPDATES=${2:-10}
IPC=${3:-2}
DIR=$(mktemp -d /tmp/sf-bench-method.XXXXXX)
trap '"$BIN/sfctl" down --dir "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
"$BIN/sfctl" up --dir "$DIR" --workers "$WORKERS" --models "${SF_MODELS:-models}" --vocab data/gpt2 --detach >/dev/null
export SF_COORDINATOR="ipc://$DIR/clients.ipc"
# shellcheck source=tools/demo_settings.sh
. tools/demo_settings.sh
run=$("$BIN/sfctl" submit --method shift --classes "$DEMO_CLASSES" --ppo-updates "$UPDATES" --ppo batch_size=32 \
      --rollouts-per-job 8 --captions-per-class 32 --images-per-caption "$IPC" --shard-size 16 --reference-images 128)
"$BIN/sfctl" watch "$run" --interval 1000 >/dev/null
"$BIN/sfctl" down --dir "$DIR" >/dev/null 2>&1 || true
# Redis is gone with the cluster: read what we need from its AOF by starting it again.
redis-server --port 0 --unixsocket "$DIR/redis.sock" --dir "$DIR" --appendonly yes --save "" \
    >"$DIR/redis2.log" 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do redis-cli -s "$DIR/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
python3 - "$DIR" "$run" "$WORKERS" "$IPC" <<'PY'
import glob, re, subprocess, sys
d, run, workers, ipc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = subprocess.run(["redis-cli", "-s", d + "/redis.sock", "XRANGE", f"sf:run:{run}:events", "-", "+"],
                     capture_output=True, text=True).stdout.split("\n")
events, i = [], 0
while i < len(out):
    if re.match(r"^\d+-\d+$", out[i]):
        ms = int(out[i].split("-")[0]); f = {}
        i += 1
        while i + 1 < len(out) and not re.match(r"^\d+-\d+$", out[i]):
            f[out[i]] = out[i + 1]; i += 2
        events.append((ms, f))
    else:
        i += 1
def at(kind, detail=None):
    for ms, f in events:
        if f.get("type") == kind and (detail is None or f.get("detail", "").startswith(detail)):
            return ms
    return None
t0 = at("started") or events[0][0]
ends = {p: at("phase_done", p) for p in ("embed", "rollout", "captions", "generate", "filter", "manifest", "finetune")}
res = subprocess.run(["redis-cli", "-s", d + "/redis.sock", "HGETALL", f"sf:run:{run}:results"],
                     capture_output=True, text=True).stdout.split("\n")
rollouts = sum(int(m) for m in re.findall(r'"accepted":(\d+)', "\n".join(res)))
images = 10 * 32 * ipc
print(f"workers {workers}, 10 classes, {images} images")
if ends["embed"] and ends["rollout"]:
    s = (ends["rollout"] - ends["embed"]) / 1000
    print(f"  PPO phase      {s:7.1f} s   {rollouts} rollout captions accepted   {rollouts / s:7.1f} captions/s")
if ends["captions"] and ends["filter"]:
    s = (ends["filter"] - ends["captions"]) / 1000
    print(f"  generate+filter{s:7.1f} s   {images} images   {images / s:7.1f} images/s")
busy = []
for log in sorted(glob.glob(d + "/worker-*.log")):
    m = re.findall(r"busy ([0-9.]+)% of the ([0-9.]+) s", open(log).read())
    if m:
        busy.append(float(m[-1][0]))
if busy:
    print(f"  worker busy share over the run: mean {sum(busy) / len(busy):.1f}% (each: " +
          ", ".join(f"{b:.1f}%" for b in busy) + ")")
# Each phase's share: the workers' busy seconds in its job kinds over the
# phase's wall time times the slots (one per worker here).
kind_s = {}
for log in glob.glob(d + "/worker-*.log"):
    m = re.findall(r"busy by kind: (.*)", open(log).read())
    if m:
        print(f"  {log.rsplit('/', 1)[-1][:-4]}: {m[-1]}")
        for k, sec in re.findall(r"([a-z_-]+) ([0-9.]+) s / \d+ jobs", m[-1]):
            kind_s[k] = kind_s.get(k, 0.0) + float(sec)
windows = [("reference statistics", ["embed"], t0, ends["embed"]),
           ("PPO rollouts", ["rollout"], ends["embed"], ends["rollout"]),
           ("captions", ["captions"], ends["rollout"], ends["captions"]),
           ("generate + filter", ["generate", "filter"], ends["captions"], ends["filter"]),
           ("manifest + finetune", ["manifest", "finetune"], ends["filter"], ends["finetune"])]
for name, kinds, a, b in windows:
    if a is None or b is None or b <= a:
        continue
    s = (b - a) / 1000
    share = sum(kind_s.get(k, 0.0) for k in kinds) / (s * workers)
    print(f"  busy share in {name:21s} {100 * share:5.1f}% of {workers} workers x {s:.1f} s")
PY
