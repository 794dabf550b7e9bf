#!/usr/bin/env bash
# make demo: the paper's method on a local cluster (private Redis,
# coordinator, PPO learner, two workers) over 10 of the 86 ImageNet-A/R
# classes in the embedded world, with live progress bars.  It runs the method
# (strategy ppo) and the baselines (sft, d3s, low-density, base) on the same
# classes, seeds and image count (make results widens it: SF_DEMO_CLASSES, a
# class SPEC; SF_DEMO_PPO_SEEDS, one PPO run per seed, the baselines on the
# first; SF_DEMO_BASELINES); prints the PPO curve and the shift; writes
# the report (HTML, Markdown, JSON); and stops everything.  `make models` has
# checked the shipped world models first.  SF_DEMO_CORPUS=instruct-world adds
# the corpus phase to the PPO runs: the world's instruction model writes each
# class's SFT corpus, and the learner fine-tunes the policy on it before PPO
# (docs/method.md, "The demo" says why it is not the default).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/${SF_BUILD:-build}/bin"
DIR="$PWD/run/demo"
UPDATES=${SF_DEMO_UPDATES:-200}
# One worker makes the demo deterministic (the same files and tables on every
# run): SF_DEMO_WORKERS=1 SF_DEMO_UPDATES=10 tools/demo.sh is the check that a
# restructuring changed nothing.
WORKERS=${SF_DEMO_WORKERS:-2}
rm -rf "$DIR"
mkdir -p "$DIR"
"$BIN/sfctl" up --dir "$DIR" --workers "$WORKERS" --models "${SF_MODELS:-models}" --vocab data/gpt2 --detach
trap '"$BIN/sfctl" down --dir "$DIR" >/dev/null' EXIT
export SF_COORDINATOR="ipc://$DIR/clients.ipc"
# The classes and PPO settings (tools/demo_settings.sh says why these).
# shellcheck source=tools/demo_settings.sh
. tools/demo_settings.sh
CLASSES=${SF_DEMO_CLASSES:-$DEMO_CLASSES}
read -r -a SEEDS <<<"${SF_DEMO_PPO_SEEDS:-1}"
COMMON=(--method shift --classes "$CLASSES" --captions-per-class 16 --images-per-caption 1 --reference-images 128)
# The corpus phase (SF_DEMO_CORPUS): 16 captions per class from the
# instruction model, then 200 SFT steps of 16 on them at a tenth of sf-train
# sft's peak rate, so the shipped policy adapts to that corpus rather than
# being retrained.
CORPUS=()
[ -n "${SF_DEMO_CORPUS:-}" ] && CORPUS=(--corpus-model "$SF_DEMO_CORPUS" --corpus-captions 16
    --set 'sft={"steps":200,"batch_size":16,"learning_rate":0.0001}')
ppo=()
for seed in "${SEEDS[@]}"; do
    r=$("$BIN/sfctl" submit "${COMMON[@]}" --seed "$seed" --ppo-updates "$UPDATES" "${DEMO_PPO[@]}" \
        "${CORPUS[@]}" --name "demo: the method (PPO, seed $seed)")
    echo "submitted $r: the method (seed $seed) on $CLASSES, $UPDATES PPO updates of 32 rollouts, 16 captions per class"
    ppo+=("$r")
done
for r in "${ppo[@]}"; do "$BIN/sfctl" watch "$r" --interval 500; done
# The baselines run side by side (the workers share them; their fine-tuning
# reuses the controls the method's run trained), watched one after another.
base=()
# make results adds best-of-n and low-density-oracle (tools/results.sh); the
# demo keeps to four.
for s in ${SF_DEMO_BASELINES:-sft d3s low-density base}; do
    r=$("$BIN/sfctl" submit "${COMMON[@]}" --seed "${SEEDS[0]}" --strategy "$s" --name "demo: baseline $s")
    echo "submitted $r: the baseline '$s' on the same classes, seeds and image count"
    base+=("$r")
done
for r in "${base[@]}"; do "$BIN/sfctl" watch "$r" --interval 500; done
run=${ppo[0]}
echo
for r in "${ppo[@]}"; do
    svg=()
    [ "$r" = "$run" ] && svg=(--svg "$DIR/ppo-curve.svg")
    python3 tools/method_summary.py --redis "$DIR/redis.sock" --data "$DIR/data" --run "$r" --baseline "${base[0]}" \
        "${svg[@]}"
    echo
done
"$BIN/sfctl" report "$run" --compare "${ppo[@]:1}" "${base[@]}" --out "$DIR/report" --data "$DIR/data" \
    --redis "unix:$DIR/redis.sock"
echo
cat "$DIR/report/report.md"
echo
echo "dataset (ImageFolder + manifest.jsonl): $DIR/data/datasets/$run"
echo "copy it out with: build/bin/sfctl export $run --to DIR --data $DIR/data"
echo "report: $DIR/report/report.html   PPO curve: $DIR/ppo-curve.svg"
