#!/usr/bin/env bash
# shiftforge against its peers: BullMQ, Celery and RQ, no-op jobs through the
# whole path, in one run on this machine, printed as one Markdown table with
# the ratios shiftforge / peer.  Usage: tools/bench_peers.sh
#
# Every system gets the same setup:
# - its own private redis-server on a unix socket in a temp dir, started
#   with the arguments `sfctl up` gives it (cli/cluster.c): AOF on,
#   appendfsync always, maxmemory-policy noeviction, no RDB saves;
# - 8 worker processes, all started and registered before the first job is
#   submitted;
# - no-op jobs, each peer at its default result retention: BullMQ keeps
#   every completed job (removeOnComplete unset), Celery keeps results for
#   result_expires (1 day), RQ for result_ttl (500 s); shiftforge keeps a
#   done bit per job and per-class counters (noop results are empty).
#
# Rows (each peer's settings are its defaults unless said here):
# - shiftforge: tools/bench_jobs.sh at the shipped credit (no --prefetch).
# - BullMQ: 8 `node` processes, each one Worker at concurrency 1 (the
#   default); a second row at PEERS_BULLMQ_CONCURRENCY per process.  Jobs
#   are submitted with Queue.addBulk, 1,000 a call.
# - Celery: one `celery worker --pool prefork --concurrency 8` (8 child
#   processes, the default pool), and 8 `--pool solo` workers as a second
#   row.  Redis broker and Redis result backend; loglevel WARNING (the
#   default); the submitter sends with send_task from an app without a
#   result backend, so it does not SUBSCRIBE to each task's result channel.
# - RQ: 8 `rq worker` processes with the default Worker (a fork per job),
#   and 8 with SimpleWorker (no fork) as a second row; --logging_level
#   WARNING so that no line per job is logged.  Jobs are submitted with
#   Queue.enqueue_many, 1,000 a call.
#
# What the columns mean, the same for every row:
# - seconds: from the start of submission to the last result recorded in
#   Redis (shiftforge: the run's created_ms to finished_ms; peers: the first
#   submit call to the largest end stamp below);
# - latency, per job: from the moment the job is taken by (dispatched to) one
#   worker until its result is stored:
#     shiftforge: dispatch to the worker until the Redis EXEC carrying its
#       result is acknowledged (the coordinator's histogram);
#     BullMQ: finishedOn - processedOn (processedOn: moved to active by the
#       worker; finishedOn: stamped right before the call that stores the
#       result; whole milliseconds);
#     Celery: task_received in the worker's main process (its consumer got
#       the message; prefetched messages wait in the worker, as with
#       shiftforge's credit) to the result's date_done;
#     RQ: Worker.execute_job, right after the dequeue and before the fork,
#       to the job's ended_at.
#   The peers' end stamps are taken just before their result write, so the
#   write's own round trip and fsync are not in their latency (they are in
#   shiftforge's).  Observing hooks are in tools/peers/*_tasks.py; they
#   write to local files, never to Redis.  p50/p99: nearest rank over every
#   job for the peers, shiftforge's histogram quantiles for shiftforge;
# - Redis bytes per finished job: growth of INFO used_memory from before
#   submission to after every job counts as done, over the jobs.  For the
#   peers each reading waits until used_memory is steady (Redis shrinks idle
#   clients' buffers only after seconds; 16 to 81 clients connect here), so
#   it counts what Redis keeps; bench_jobs.sh reads at once (its few
#   clients' buffers are small against its 1,000,000 jobs).
# Each peer must report every job completed (BullMQ's completed count, RQ's
# FinishedJobRegistry plus every job's status, Celery's stored result of
# every task); otherwise its row says why it failed.
#
# Environment:
#   PEERS_SMALL=1              a quick run: a few thousand jobs each
#   PEERS_SF_JOBS              shiftforge jobs, a multiple of 1000 [1000000]
#   PEERS_BULLMQ_JOBS          [100000]
#   PEERS_BULLMQ_CONCURRENCY   per-process concurrency of the second BullMQ
#                              row, 0 for no such row [8]
#   PEERS_CELERY_JOBS          [10000]
#   PEERS_RQ_JOBS              RQ Worker (fork per job) [3000]
#   PEERS_RQ_SIMPLE_JOBS       RQ SimpleWorker [10000]
#   PEERS_ONLY                 systems to run ["shiftforge bullmq celery rq"]
#   PEERS_TIMEOUT              seconds one run may take [300]
#   PEERS_OUT=path             also write the table and ratios there
#   PEERS_BULLMQ_VERSION       npm version installed when missing [6.7.6]
#   SF_BIN                     shiftforge binaries (skips `make -j1 build`)
# Installs what it needs when missing: bullmq and ioredis with npm into
# build/peers/node_modules, python3-celery and python3-rq with apt-get.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=/usr/bin/python3                   # Debian's, where python3-celery/-rq install
PEERS_CACHE=$ROOT/build/peers
WORKERS=8

if [ "${PEERS_SMALL:-0}" = 1 ]; then
    d_sf=100000 d_bull=5000 d_celery=2000 d_rq=1000 d_rqs=2000
else
    d_sf=1000000 d_bull=100000 d_celery=10000 d_rq=3000 d_rqs=10000
fi
SF_JOBS=${PEERS_SF_JOBS:-$d_sf}
BULLMQ_JOBS=${PEERS_BULLMQ_JOBS:-$d_bull}
BULLMQ_CONC=${PEERS_BULLMQ_CONCURRENCY:-8}
CELERY_JOBS=${PEERS_CELERY_JOBS:-$d_celery}
RQ_JOBS=${PEERS_RQ_JOBS:-$d_rq}
RQ_SIMPLE_JOBS=${PEERS_RQ_SIMPLE_JOBS:-$d_rqs}
ONLY=" ${PEERS_ONLY:-shiftforge bullmq celery rq} "
TIMEOUT=${PEERS_TIMEOUT:-300}
BULLMQ_VERSION=${PEERS_BULLMQ_VERSION:-6.7.6}
READY_TIMEOUT=60
if [ $((SF_JOBS % 1000)) -ne 0 ] || [ "$SF_JOBS" -lt 1000 ]; then
    echo "bench_peers: PEERS_SF_JOBS must be a positive multiple of 1000 (1000 classes)" >&2
    exit 2
fi

T=$(mktemp -d /tmp/sf-peers.XXXXXX)
groups=()                             # process groups started here (setsid)

# Whether any of the given process groups still has a process.
any_alive() {
    local g
    for g in "$@"; do kill -0 -- "-$g" 2>/dev/null && return 0; done
    return 1
}
# Stops the given process groups: TERM, up to 10 s to leave, then KILL.
stop_groups() {
    local g
    for g in "$@"; do kill -TERM -- "-$g" 2>/dev/null; done
    for _ in $(seq 100); do any_alive "$@" || break; sleep 0.1; done
    for g in "$@"; do kill -KILL -- "-$g" 2>/dev/null; done
    for g in "$@"; do wait "$g" 2>/dev/null; done
}
cleanup() {
    trap - EXIT INT TERM
    [ ${#groups[@]} -gt 0 ] && stop_groups "${groups[@]}"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "bench_peers: interrupted" >&2; exit 130' INT
trap 'echo "bench_peers: terminated" >&2; exit 143' TERM

# Starts a command in its own process group (its children included) with
# output to LOG; its pid lands in $started.
start() {
    local log=$1; shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    started=$!
    groups+=("$started")
}
# run_bg OUT ERR CMD...: runs CMD in its own process group and waits for it
# with `wait`, which a signal interrupts (so INT/TERM clean up at once);
# its exit status lands in $rc.
run_bg() {
    local o=$1 e=$2; shift 2
    if [ "$o" = "$e" ]; then setsid "$@" >"$o" 2>&1 </dev/null &
    else setsid "$@" >"$o" 2>"$e" </dev/null &
    fi
    local pid=$!
    groups+=("$pid")
    wait "$pid"
    rc=$?
    forget_groups "$pid"
}
forget_groups() {
    local g k keep=()
    for g in "${groups[@]}"; do
        for k in "$@"; do [ "$g" = "$k" ] && continue 2; done
        keep+=("$g")
    done
    groups=("${keep[@]}")
}

# ---- rows of the table
rows_sys=() rows_set=() rows_jobs=() rows_secs=() rows_rate=() rows_p50=() rows_p99=() rows_bpj=() rows_err=()
# add_row SYSTEM SETTINGS JOBS RESULT_LINE ERROR: RESULT_LINE is a driver's
# "RESULT k=v …" line (its jobs= wins over JOBS), empty when ERROR says why.
add_row() {
    local kv k v jobs=$3 secs='' rate='' p50='' p99='' bpj=''
    for kv in $4; do
        k=${kv%%=*} v=${kv#*=}
        case $k in
            jobs) jobs=$v ;; seconds) secs=$v ;; rate) rate=$v ;; p50_us) p50=$v ;; p99_us) p99=$v ;;
            redis_bytes_per_job) bpj=$v ;;
        esac
    done
    rows_sys+=("$1") rows_set+=("$2") rows_jobs+=("$jobs") rows_secs+=("$secs") rows_rate+=("$rate")
    rows_p50+=("$p50") rows_p99+=("$p99") rows_bpj+=("$bpj") rows_err+=("$5")
    if [ -n "$5" ]; then echo "bench_peers: $1 ($2): $5" >&2; fi
}

# ---- installation
install_bullmq() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node or npm not found"
        return 1
    fi
    local have
    have=$(NODE_PATH=$PEERS_CACHE/node_modules node -e \
        'require("ioredis"); console.log(require("bullmq/package.json").version)' 2>/dev/null)
    [ "$have" = "$BULLMQ_VERSION" ] && return 0
    mkdir -p "$PEERS_CACHE"
    echo "bench_peers: npm install bullmq@$BULLMQ_VERSION ioredis@5 into $PEERS_CACHE" >&2
    if ! (cd "$PEERS_CACHE" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
            "bullmq@$BULLMQ_VERSION" "ioredis@5") >"$T/npm.log" 2>&1; then
        echo "npm install bullmq@$BULLMQ_VERSION failed: $(grep -v -e '^\s*$' -e 'complete log' -e 'debug-0.log' "$T/npm.log" | head -2 | tr '\n' ' ')"
        return 1
    fi
}
# Debian's python3-celery and python3-rq, installed with apt-get (root, or
# sudo without a password) when /usr/bin/python3 cannot import them.
install_python_peers() {
    $PY -c 'import celery, rq' 2>/dev/null && return 0
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
    echo "bench_peers: apt-get install python3-celery python3-rq" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 600 "${sudo[@]}" apt-get install -y python3-celery python3-rq >"$T/apt.log" 2>&1; then
        timeout 300 "${sudo[@]}" apt-get update >>"$T/apt.log" 2>&1
        timeout 600 "${sudo[@]}" apt-get install -y python3-celery python3-rq >>"$T/apt.log" 2>&1
    fi
    $PY -c 'import celery, rq' 2>/dev/null && return 0
    echo "apt-get install python3-celery python3-rq failed: $(grep -v '^\s*$' "$T/apt.log" | tail -1)"
    return 1
}

# ---- a private Redis with shiftforge's persistence settings (cli/cluster.c)
# start_redis DIR: sets $redis_pid; 0 once it answers PING within 10 s,
# else 1 with the reason in $why.
start_redis() {
    local d=$1 i
    mkdir -p "$d/redis"
    start "$d/redis.log" redis-server --port 0 --unixsocket "$d/redis.sock" --dir "$d/redis" \
        --appendonly yes --appendfsync always --maxmemory-policy noeviction --save ""
    redis_pid=$started
    for i in $(seq 100); do
        [ "$(redis-cli -s "$d/redis.sock" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    why="redis-server did not answer PING on $d/redis.sock within 10 s: $(tail -1 "$d/redis.log")"
    return 1
}

# wait_ready DIR N WHAT: 0 once N ready files exist in DIR/ready, else 1
# with the reason in $why.
wait_ready() {
    local d=$1 n=$2 what=$3 i have=0
    for i in $(seq $((READY_TIMEOUT * 10))); do
        have=$(find "$d/ready" -type f | wc -l)
        [ "$have" -ge "$n" ] && return 0
        sleep 0.1
    done
    why="after ${READY_TIMEOUT} s only $have of $n $what were ready; last log lines: $(tail -qn1 "$d"/worker*.log 2>/dev/null | sort -u | head -3 | tr '\n' ' ')"
    return 1
}

# run_peer SYSTEM SETTINGS JOBS START_FN DRIVER...: a fresh Redis, the
# workers START_FN starts (it adds their pids to $wpids and says in $nready
# how many ready files they write), the driver (@DIR@ in its arguments
# stands for the row's temp dir), then everything of this row stopped and
# removed.
run_peer() {
    local sys=$1 set=$2 jobs=$3 fn=$4; shift 4
    local d out='' a args=()
    d=$(mktemp -d "$T/peer.XXXXXX")
    mkdir -p "$d/ready" "$d/lat"
    for a in "$@"; do args+=("${a//@DIR@/$d}"); done
    echo "== $sys ($set): $jobs jobs" >&2
    wpids=() why='' redis_pid=''
    if start_redis "$d" && $fn "$d" && wait_ready "$d" "$nready" "$sys workers"; then
        run_bg "$d/driver.out" "$d/driver.err" timeout $((TIMEOUT + 120)) "${args[@]}"
        out=$(cat "$d/driver.out")
        cat "$d/driver.err" >&2
        if [ $rc -eq 124 ]; then why="the driver did not finish within $((TIMEOUT + 120)) s"
        elif [ $rc -ne 0 ] || ! grep -q '^RESULT ' <<<"$out"; then
            why="failed: $(grep -v '^\s*$' "$d/driver.err" | tail -1 | sed 's/^[a-z_]*: //')"
        fi
        # A worker that died during the run is a failure even if all jobs got done.
        for a in "${wpids[@]}"; do
            kill -0 "$a" 2>/dev/null || { [ -z "$why" ] && why="a worker (pid $a) exited during the run: $(tail -1 "$d"/worker*.log | tail -1)"; }
        done
    fi
    [ -n "$why" ] && out=
    add_row "$sys" "$set" "$jobs" "$(grep '^RESULT ' <<<"$out")" "$why"
    stop_groups "${wpids[@]}" $redis_pid
    forget_groups "${wpids[@]}" $redis_pid
    rm -rf "$d"
}

# ---- worker starters: each starts $WORKERS processes for a peer dir
bullmq_conc=1
start_bullmq_workers() {
    local d=$1 i
    for i in $(seq $WORKERS); do
        start "$d/worker$i.log" env NODE_PATH="$PEERS_CACHE/node_modules" node "$ROOT/tools/peers/bullmq_worker.js" \
            "$d/redis.sock" peers "$bullmq_conc" "$d/ready/bullmq.$i"
        wpids+=("$started")
    done
    nready=$WORKERS
}
# The environment of the Python workers of peer dir $1, as a command prefix.
py_env() {
    pyenv=(env PEERS_REDIS_SOCK="$1/redis.sock" PEERS_READY_DIR="$1/ready" PEERS_LAT_DIR="$1/lat"
           PYTHONPATH="$ROOT/tools/peers" PYTHONDONTWRITEBYTECODE=1)
}
start_celery_prefork() {
    local d=$1
    # One worker with 8 children: wait_ready counts one ready file for it.
    py_env "$d"
    start "$d/worker1.log" "${pyenv[@]}" $PY -m celery -A celery_tasks worker --pool prefork \
        --concurrency $WORKERS --loglevel WARNING -n "peers1@%h"
    wpids+=("$started")
    nready=1     # worker_ready fires once, in the main process, after the pool of 8 is up
}
start_celery_solo() {
    local d=$1 i
    py_env "$d"
    for i in $(seq $WORKERS); do
        start "$d/worker$i.log" "${pyenv[@]}" $PY -m celery -A celery_tasks worker --pool solo \
            --loglevel WARNING -n "peers$i@%h"
        wpids+=("$started")
    done
    nready=$WORKERS
}
rq_class=rq_tasks.TimedWorker
start_rq_workers() {
    local d=$1 i
    py_env "$d"
    for i in $(seq $WORKERS); do
        start "$d/worker$i.log" "${pyenv[@]}" $PY -m rq.cli worker --url "unix://$d/redis.sock" \
            --worker-class "$rq_class" --logging_level WARNING --name "peers$i" peers
        wpids+=("$started")
    done
    nready=$WORKERS
}

# ---- shiftforge: tools/bench_jobs.sh at the shipped credit
run_shiftforge() {
    local bin=${SF_BIN:-$ROOT/build/bin} out err=''
    echo "== shiftforge (8 workers, default credit): $SF_JOBS jobs" >&2
    if [ -z "${SF_BIN:-}" ]; then
        run_bg "$T/make.log" "$T/make.log" timeout 3600 make -j1 build
        if [ $rc -ne 0 ]; then
            if [ -x "$bin/sfctl" ]; then
                echo "bench_peers: make -j1 build failed; using the binaries already in $bin: $(tail -1 "$T/make.log")" >&2
            else
                add_row shiftforge "8 workers, default credit" "$SF_JOBS" "" "not built: $(tail -1 "$T/make.log")"
                return
            fi
        fi
    fi
    run_bg "$T/sf.out" "$T/sf.err" env SF_BIN="$bin" SF_BENCH_TIMEOUT="$TIMEOUT" timeout $((TIMEOUT + 60)) \
        tools/bench_jobs.sh $((SF_JOBS / 1000)) default
    out=$(cat "$T/sf.out")
    echo "$out" | grep -v '^RESULT ' >&2
    cat "$T/sf.err" >&2
    if [ $rc -ne 0 ] || ! grep -q '^RESULT ' <<<"$out"; then
        err="failed (exit $rc): $(grep -v '^\s*$' "$T/sf.err" | tail -1)"
        out=
    fi
    add_row shiftforge "8 workers, default credit (no --prefetch), sfctl up" "$SF_JOBS" \
        "$(grep '^RESULT ' <<<"$out" | tail -1)" "$err"
}

# ---- the runs
on() { [[ $ONLY == *" $1 "* ]]; }

on shiftforge && run_shiftforge

if on bullmq; then
    if why=$(install_bullmq); then
        v=$(NODE_PATH=$PEERS_CACHE/node_modules node -e 'console.log(require("bullmq/package.json").version)')
        drv=(env NODE_PATH="$PEERS_CACHE/node_modules" node "$ROOT/tools/peers/bullmq_bench.js")
        bullmq_conc=1
        run_peer BullMQ "bullmq $v, 8 processes x concurrency 1 (default)" "$BULLMQ_JOBS" start_bullmq_workers \
            "${drv[@]}" @DIR@/redis.sock peers "$BULLMQ_JOBS" "$TIMEOUT"
        if [ "$BULLMQ_CONC" -gt 0 ] 2>/dev/null; then
            bullmq_conc=$BULLMQ_CONC
            run_peer BullMQ "bullmq $v, 8 processes x concurrency $BULLMQ_CONC" "$BULLMQ_JOBS" start_bullmq_workers \
                "${drv[@]}" @DIR@/redis.sock peers "$BULLMQ_JOBS" "$TIMEOUT"
        fi
    else
        add_row BullMQ "8 processes x concurrency 1" "$BULLMQ_JOBS" "" "not installed: $why"
    fi
fi

if on celery || on rq; then
    if ! why=$(install_python_peers); then
        on celery && add_row Celery "prefork, concurrency 8" "$CELERY_JOBS" "" "not installed: $why"
        on rq && add_row RQ "8 workers" "$RQ_JOBS" "" "not installed: $why"
    else
        if on celery; then
            v=$($PY -c 'import celery; print(celery.__version__)')
            run_peer Celery "celery $v, 1 worker --pool prefork --concurrency 8, prefetch x4" "$CELERY_JOBS" \
                start_celery_prefork $PY "$ROOT/tools/peers/pybench.py" celery @DIR@/redis.sock "$CELERY_JOBS" "$TIMEOUT" @DIR@/lat
            run_peer Celery "celery $v, 8 workers --pool solo, prefetch x4" "$CELERY_JOBS" \
                start_celery_solo $PY "$ROOT/tools/peers/pybench.py" celery @DIR@/redis.sock "$CELERY_JOBS" "$TIMEOUT" @DIR@/lat
        fi
        if on rq; then
            v=$($PY -c 'import rq; print(rq.__version__)')
            rq_class=rq_tasks.TimedWorker
            run_peer RQ "rq $v, 8 x rq worker, Worker (fork per job, default)" "$RQ_JOBS" \
                start_rq_workers $PY "$ROOT/tools/peers/pybench.py" rq @DIR@/redis.sock "$RQ_JOBS" "$TIMEOUT" @DIR@/lat
            rq_class=rq_tasks.TimedSimpleWorker
            run_peer RQ "rq $v, 8 x rq worker, SimpleWorker (no fork)" "$RQ_SIMPLE_JOBS" \
                start_rq_workers $PY "$ROOT/tools/peers/pybench.py" rq @DIR@/redis.sock "$RQ_SIMPLE_JOBS" "$TIMEOUT" @DIR@/lat
        fi
    fi
fi

# ---- the table and the ratios
commas() { awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }
ms() { awk -v u="$1" 'BEGIN { if (u >= 10000) printf "%.0f ms", u / 1000; else printf "%.2g ms", u / 1000 }'; }
table() {
    local i sf=-1
    echo "| system | settings | jobs | seconds | jobs/s | p50 latency | p99 latency | Redis bytes per finished job |"
    echo "|---|---|---|---|---|---|---|---|"
    for i in "${!rows_sys[@]}"; do
        if [ -n "${rows_err[$i]}" ]; then
            echo "| ${rows_sys[$i]} | ${rows_set[$i]} | $(commas "${rows_jobs[$i]}") | ${rows_err[$i]} | | | | |"
            continue
        fi
        [ "${rows_sys[$i]}" = shiftforge ] && [ $sf -lt 0 ] && sf=$i
        printf '| %s | %s | %s | %.1f | %s | %s | %s | %.1f |\n' "${rows_sys[$i]}" "${rows_set[$i]}" \
            "$(commas "${rows_jobs[$i]}")" "${rows_secs[$i]}" "$(commas "${rows_rate[$i]}")" \
            "$(ms "${rows_p50[$i]}")" "$(ms "${rows_p99[$i]}")" "${rows_bpj[$i]}"
    done
    echo
    echo "Same machine, one run, each system on its own redis-server (unix socket, AOF, appendfsync always," \
         "noeviction, as \`sfctl up\`), 8 worker processes each, no-op jobs. Seconds: start of submission to" \
         "the last result recorded in Redis. Latency: from a worker taking the job (shiftforge: dispatch) to its" \
         "result stored (shiftforge: the Redis EXEC acknowledged; peers: their stamp just before the result write;" \
         "BullMQ in whole ms). Redis bytes per finished job: used_memory growth over the run / jobs (peers: read" \
         "once steady), at each" \
         "system's default retention: BullMQ keeps every completed job, Celery keeps results 1 day (result_expires)," \
         "RQ 500 s (result_ttl); shiftforge keeps a done bit per job and per-class counters."
    echo
    [ $sf -lt 0 ] && { echo "(no shiftforge row to compare with)"; return; }
    for i in "${!rows_sys[@]}"; do
        [ "$i" = "$sf" ] || [ -n "${rows_err[$i]}" ] && continue
        awk -v n="${rows_sys[$i]} (${rows_set[$i]})" -v ra="${rows_rate[$sf]}" -v rb="${rows_rate[$i]}" \
            -v ba="${rows_bpj[$sf]}" -v bb="${rows_bpj[$i]}" 'BEGIN {
                printf "- shiftforge / %s: x%.1f jobs/s, ", n, ra / rb
                if (bb <= 0) { printf "Redis bytes per job n/a (peer %s)\n", bb; exit }
                # two significant digits, never in e-notation
                r = ba / bb; d = 1; if (r > 0 && r < 1) { l = log(r) / log(10); f = int(l); if (f > l) f--; d = 1 - f }
                printf sprintf("x%%.%df Redis bytes per job\n", d), r }'
    done
}
echo
table | tee "$T/table.md"
if [ -n "${PEERS_OUT:-}" ]; then
    cp "$T/table.md" "$PEERS_OUT" && echo "bench_peers: table written to $PEERS_OUT" >&2
fi
failed=0
for e in "${rows_err[@]}"; do [ -n "$e" ] && failed=1; done
exit $failed
