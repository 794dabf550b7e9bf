#!/usr/bin/env bash
# make demo: the paper's method on a local cluster (private Redis,
# coordinator, PPO learner, two workers) over 10 of the 86 ImageNet-A/R
# classes in the embedded world, with live progress bars.  It runs the method
# (strategy ppo) and, for comparison, the SFT policy alone on the same
# classes, seeds and image count; prints where the dataset is, the PPO curve
# and the shift, and stops everything.  `make models` has trained the world's
# models first (cached).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/${SF_BUILD:-build}/bin"
DIR="$PWD/run/demo"
UPDATES=${SF_DEMO_UPDATES:-60}
rm -rf "$DIR"
mkdir -p "$DIR"
"$BIN/sfctl" up --dir "$DIR" --workers 2 --models "${SF_MODELS:-models}" --vocab data/gpt2 --detach
trap '"$BIN/sfctl" down --dir "$DIR" >/dev/null' EXIT
export SF_COORDINATOR="ipc://$DIR/clients.ipc"
# Ten classes of the 86: fish, birds, reptiles, insects, objects.
CLASSES="stingray,junco,bald eagle,chameleon,scorpion,jellyfish,ladybug,accordion,lighthouse,pretzel"
COMMON=(--method shift --classes "$CLASSES" --captions-per-class 16 --images-per-caption 1 --reference-images 128
        --seed 1)
run=$("$BIN/sfctl" submit "${COMMON[@]}" --ppo-updates "$UPDATES" --ppo batch_size=32 --ppo mini_batch_size=8 \
      --rollouts-per-job 8 --name "demo: the method (PPO)")
echo "submitted $run: the method on 10 classes, $UPDATES PPO updates of 32 rollouts, 16 captions per class"
"$BIN/sfctl" watch "$run" --interval 500
base=$("$BIN/sfctl" submit "${COMMON[@]}" --strategy sft --name "demo: SFT policy alone")
echo "submitted $base: the same with the SFT policy alone (the baseline)"
"$BIN/sfctl" watch "$base" --interval 500
echo
python3 tools/method_summary.py --redis "$DIR/redis.sock" --data "$DIR/data" --run "$run" --baseline "$base" \
    --svg "$DIR/ppo-curve.svg"
echo
echo "dataset (ImageFolder + manifest.jsonl): $DIR/data/datasets/$run"
echo "copy it out with: build/bin/sfctl export $run --to DIR --data $DIR/data"
echo "PPO curve: $DIR/ppo-curve.svg"
