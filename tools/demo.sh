#!/usr/bin/env bash
# make demo: a local cluster (private Redis, coordinator, workers) runs a job
# over the 86 ImageNet-A/R classes with live progress bars, then stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/${SF_BUILD:-build}/bin"
DIR="$PWD/run/demo"
rm -rf "$DIR"
mkdir -p "$DIR"
"$BIN/sfctl" up --dir "$DIR" --workers 4 --slots 4 --detach
trap '"$BIN/sfctl" down --dir "$DIR" >/dev/null' EXIT
export SF_COORDINATOR="ipc://$DIR/clients.ipc"
run=$("$BIN/sfctl" submit --classes builtin:imagenet-a-r-86 --kind sleep --payload '{"ms":10}' \
      --items-per-class 32 --shard-size 4 --name demo)
echo "submitted $run: 86 classes x 32 items in shards of 4 (sleep jobs, 10 ms per item)"
"$BIN/sfctl" watch "$run" --interval 200
echo
"$BIN/sfctl" status "$run" | head -12
echo
echo "Redis holds it all:  redis-cli -s $DIR/redis.sock HGETALL sf:run:$run"
redis-cli -s "$DIR/redis.sock" HGETALL "sf:run:$run" | paste - - | grep -E "^(state|done|total|dead)\b" | sed 's/^/  /'
