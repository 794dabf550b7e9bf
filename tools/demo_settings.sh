# shellcheck shell=bash disable=SC2034  # sourced: the arrays are the callers'
# tools/demo_settings.sh: the demo's classes and PPO settings, in one place,
# sourced by tools/demo.sh (which runs them), tools/bench_learner.sh --curve
# (which measures the demo's PPO run before and after a speed-up) and
# tools/bench_method.sh (the same classes).
#
# Ten of the 86 classes (the world models know those): fish, birds,
# reptiles, arthropods, objects, food.
DEMO_CLASSES="stingray,junco,bald eagle,chameleon,scorpion,jellyfish,ladybug,accordion,lighthouse,pretzel"
# PPO for the small world policy: TRL's defaults are tuned for GPT-2 124M;
# this 3-layer policy needs a larger step (2e-4) and a lighter KL penalty
# (0.03) to move its images within a couple of hundred updates; the prompt
# baseline (the default, named here) keeps the nonsense share low meanwhile
# (docs/method.md, "The prompt baseline").  tests/bench/bench_ml_gpt2.c's
# --learner mode writes the same values in C.
DEMO_PPO=(--ppo batch_size=32 --ppo mini_batch_size=8 --ppo learning_rate=0.0002 --ppo init_kl_coef=0.03
          --ppo prompt_baseline=1 --rollouts-per-job 8)
