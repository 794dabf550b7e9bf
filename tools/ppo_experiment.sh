#!/usr/bin/env bash
# ppo_experiment.sh: the method run of the demo on its own, for trying PPO
# settings: a local cluster (two workers) runs the method on the demo's 10
# classes with UPDATES updates of 32 rollouts and 16 captions per class (no
# fine-tuning phase), then prints the mean score, nonsense share, KL and
# entropy by fifths of the run, and the shift of its images (the mean CLIP
# similarity to the class mean, against the reference images').
#   tools/ppo_experiment.sh UPDATES [sfctl submit flags…]
#   e.g. tools/ppo_experiment.sh 120 --ppo learning_rate=0.0002 --ppo init_kl_coef=0.1
# SF_MODELS names the models folder (default models); the cluster lives in
# $SF_EXPERIMENT_DIR (default run/ppo-experiment) and is stopped on exit;
# SF_EXPERIMENT_CSV names a file for the learner's statistics of every update.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/${SF_BUILD:-build}/bin"
UPD=${1:?usage: tools/ppo_experiment.sh UPDATES [sfctl submit flags…]}
shift
DIR="${SF_EXPERIMENT_DIR:-$PWD/run/ppo-experiment}"
rm -rf "$DIR"
mkdir -p "$DIR"
"$BIN/sfctl" up --dir "$DIR" --workers 2 --models "${SF_MODELS:-models}" --vocab data/gpt2 --detach >/dev/null
trap '"$BIN/sfctl" down --dir "$DIR" >/dev/null' EXIT
export SF_COORDINATOR="ipc://$DIR/clients.ipc"
CLASSES="stingray,junco,bald eagle,chameleon,scorpion,jellyfish,ladybug,accordion,lighthouse,pretzel"
run=$("$BIN/sfctl" submit --method shift --classes "$CLASSES" --captions-per-class 16 --images-per-caption 1 \
      --reference-images 128 --seed 1 --ppo-updates "$UPD" --ppo batch_size=32 --ppo mini_batch_size=8 \
      --rollouts-per-job 8 --finetune-images-per-class 0 "$@" --name "ppo experiment")
"$BIN/sfctl" watch "$run" --interval 2000 >/dev/null 2>&1 || true
python3 - "$DIR/redis.sock" "$run" "${SF_EXPERIMENT_CSV:-}" <<'PY'
import csv, sys
sys.path.insert(0, "tools")
from method_summary import ppo_curve
rows = ppo_curve(sys.argv[1], sys.argv[2])
if sys.argv[3]:
    keys = sorted({k for r in rows for k in r})
    with open(sys.argv[3], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
n = len(rows)
q = max(1, n // 5)
def mean(k, a, b):
    v = [r.get(k, 0.0) for r in rows[a:b]]
    return sum(v) / max(1, len(v))
print(f"{n} updates")
for i in range(0, n, q):
    print("updates %3d-%3d  score %.3f  nonsense %.3f  kl %.3f  entropy %.2f" % (
        i + 1, min(n, i + q), mean("mean_score", i, i + q), mean("nonsense", i, i + q), mean("kl", i, i + q),
        mean("entropy", i, i + q)))
PY
python3 tools/method_summary.py --redis "$DIR/redis.sock" --data "$DIR/data" --run "$run" | sed -n '/similarity/,$p'
