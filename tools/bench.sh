#!/usr/bin/env bash
# make bench: every benchmark program, the shim against eager PyTorch
# (tools/bench_parity.py), the learner's PPO update before and after its
# speed-up (tools/bench_learner.sh), the job-system benchmarks, then the
# method end to end on a local cluster of 4 workers (needs models/, which
# `make bench` trains first when they are missing).
# Benchmarks measure speed; they are not tests and assert nothing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${SF_BUILD:-build}
for b in "$B"/bench/bench_*; do
    [ -x "$b" ] || continue
    # The parity bench is half of a comparison: it runs below, through its
    # script, next to the same computations in eager PyTorch.
    [ "$(basename "$b")" = bench_ml_parity ] && continue
    # The model benches with no arguments run CPU shapes; say which.
    what=
    case $(basename "$b") in
        bench_ml_llama) what=": the instruction model, LLaMA-7B widths on 2 of its 32 layers and a world-sized LLaMA" ;;
        bench_ml_t5) what=": IF's text encoder, T5-v1.1-XXL's encoder widths on 2 of its 24 layers" ;;
    esac
    echo "== $(basename "$b")$what"
    "$b"
    echo
done
if [ -x "$B/bench/bench_ml_parity" ]; then
    echo "== the shim against eager PyTorch: training and inference steps, one thread (tools/bench_parity.py)"
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        SF_BUILD="$B" /usr/bin/python3 tools/bench_parity.py
    else
        echo "skipped: /usr/bin/python3 cannot import torch (Debian's python3-torch; make deps installs it)"
    fi
    echo
fi
echo "== the learner's PPO update on the demo's settings, before the speed-up and now (tools/bench_learner.sh; --curve 200 adds the demo's PPO curve)"
SF_BUILD="$B" tools/bench_learner.sh
echo
echo "== job system (noop jobs, whole path, 8 workers, the default credit and fixed ones; Redis appendfsync always, as shipped, against everysec)"
SF_BIN="$PWD/$B/bin" SF_APPENDFSYNC="always everysec" tools/bench_jobs.sh 1000 default 2 16 128
echo
echo "== the peers in the same run: BullMQ, Celery and RQ against shiftforge at defaults (installs them when missing)"
SF_BIN="$PWD/$B/bin" tools/bench_peers.sh
echo
echo "== one coordinator with 1,000 and 4,000 connected workers (tools/bench_scale.sh --full for 10 M jobs)"
SF_BIN="$PWD/$B/bin" tools/bench_scale.sh
echo
echo "== coordinator memory: 100 runs of 10 M jobs submitted and cancelled"
SF_BIN="$PWD/$B/bin" tools/bench_memory.sh 100
echo
echo "== the method end to end (4 workers, 10 classes, 20 PPO updates, 2,560 images)"
SF_BUILD="$B" tools/bench_method.sh 4 20 8
