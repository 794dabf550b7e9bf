#!/usr/bin/python3
"""The Celery and RQ side of tools/bench_peers.sh.

With the workers already up, submits JOBS no-op jobs, waits until the peer
has stored a result for every one, checks them all, and prints one line
    RESULT jobs=N seconds=S rate=R p50_us=A p99_us=B redis_bytes_per_job=M
or exits 1 saying what it was waiting for.

seconds: from the first submission to the last job's end (below).
latency of a job: from when a worker took it off the queue to the wall clock
  the worker stamped on it right before the call that stores its result:
  - celery: task_received in the worker's main process (celery_tasks.py) to
    the result's date_done;
  - rq: Worker.execute_job, before the fork (rq_tasks.py), to the job's
    ended_at.
  Percentiles are nearest-rank over every job, in microseconds.
bytes per job: growth of INFO used_memory from before the first submission
  to after every job has its result, each read once it is steady (see
  steady_memory), over JOBS.

Wall clocks throughout: the peers store wall-clock stamps, and the workers'
and this process's clocks must be the same one to be compared.

    pybench.py celery|rq REDIS_SOCK JOBS TIMEOUT_S LAT_DIR
"""
import calendar
import datetime
import json
import math
import os
import sys
import time

import redis

CHUNK = 1000


def fail(msg):
    print("pybench: " + msg, file=sys.stderr)
    sys.exit(1)


def used_memory(r):
    return int(r.info("memory")["used_memory"])


def steady_memory(r, timeout_s=20):
    """used_memory once it has held within 4 KiB for 1.5 s.  Redis shrinks
    idle clients' query buffers only after seconds, so right after the
    workers connect, or right after a run, used_memory still holds transient
    buffers; what is measured here is what Redis keeps."""
    deadline = time.monotonic() + timeout_s
    last, same = used_memory(r), 0
    while same < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        m = used_memory(r)
        same = same + 1 if abs(m - last) <= 4096 else 0
        last = m
    return last


def quantile(sorted_values, q):
    """Nearest-rank quantile (the same rule as bullmq_bench.js)."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def utc_us(text, fmt):
    """Microseconds since the epoch of a naive UTC timestamp."""
    d = datetime.datetime.strptime(text, fmt)
    return calendar.timegm(d.timetuple()) * 1000000 + d.microsecond


def read_starts(lat_dir, prefix, ids, timeout_s):
    """The first 'taken' stamp of each job id from the workers' logs."""
    want = set(ids)
    deadline = time.monotonic() + timeout_s
    while True:
        starts = {}
        for name in os.listdir(lat_dir):
            if not name.startswith(prefix + "."):
                continue
            with open(os.path.join(lat_dir, name), "rb") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2:
                        jid = parts[0].decode()
                        if jid in want and jid not in starts:
                            starts[jid] = int(parts[1])
        if len(starts) == len(want) or time.monotonic() > deadline:
            return starts
        time.sleep(0.1)


def wait_done(chunks_done, chunks, timeout_s, waiting_for):
    """Polls chunks_done(chunk) over the chunks in submission order until each
    is done; checks only from the first unfinished chunk on, since the
    queues are FIFO and a poll must not load Redis with every job."""
    deadline = time.monotonic() + timeout_s
    i = 0
    while i < len(chunks):
        if chunks_done(chunks[i]):
            i += 1
            continue
        if time.monotonic() > deadline:
            fail("after %s s still waiting for %s: %d of %d jobs known done (first unfinished chunk %d of %d)"
                 % (timeout_s, waiting_for(), i * CHUNK, sum(len(c) for c in chunks), i, len(chunks)))
        time.sleep(0.1)


def run_celery(sock, jobs, timeout_s, lat_dir):
    from celery import Celery

    r = redis.Redis(unix_socket_path=sock)
    # The submitter has no result backend: with the Redis backend,
    # apply_async SUBSCRIBEs to each task's result channel, which would put
    # 1 subscription per job into Redis's memory; results are read from
    # Redis directly below.  The workers (celery_tasks.py) do store results.
    app = Celery("peers", broker="redis+socket://" + sock)
    mem0 = steady_memory(r)
    t0 = time.time_ns() // 1000
    ids = []
    with app.producer_or_acquire() as producer:
        for _ in range(jobs):
            ids.append(app.send_task("noop", producer=producer).id)
    print("pybench: submitted %d celery tasks in %.2f s" % (jobs, (time.time_ns() // 1000 - t0) / 1e6),
          file=sys.stderr)
    chunks = [ids[i:i + CHUNK] for i in range(0, jobs, CHUNK)]
    key = "celery-task-meta-%s"
    wait_done(lambda c: r.exists(*[key % i for i in c]) == len(c), chunks, timeout_s,
              lambda: "a stored result for every task (broker queue length %d)" % r.llen("celery"))
    mem1 = steady_memory(r)

    ends, states = {}, {}
    for c in chunks:
        for jid, raw in zip(c, r.mget([key % i for i in c])):
            meta = json.loads(raw)
            states[meta["status"]] = states.get(meta["status"], 0) + 1
            if meta["status"] == "SUCCESS":
                ends[jid] = utc_us(meta["date_done"], "%Y-%m-%dT%H:%M:%S.%f")
    if len(ends) != jobs:
        fail("celery reports %s for %d tasks" % (states, jobs))
    starts = read_starts(lat_dir, "celery", ids, 10)
    return report(jobs, t0, starts, ends, mem0, mem1)


def run_rq(sock, jobs, timeout_s, lat_dir):
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    r = redis.Redis(unix_socket_path=sock)
    q = Queue("peers", connection=r)
    finished = FinishedJobRegistry(queue=q)
    failed = FailedJobRegistry(queue=q)
    mem0 = steady_memory(r)
    t0 = time.time_ns() // 1000
    ids = []
    for i in range(0, jobs, CHUNK):
        batch = [Queue.prepare_data("rq_tasks.noop") for _ in range(min(CHUNK, jobs - i))]
        ids.extend(j.id for j in q.enqueue_many(batch))
    print("pybench: submitted %d rq jobs in %.2f s" % (jobs, (time.time_ns() // 1000 - t0) / 1e6), file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    while True:
        n_done, n_failed = r.zcard(finished.key), r.zcard(failed.key)
        if n_done + n_failed >= jobs:
            break
        if time.monotonic() > deadline:
            fail("after %s s still waiting for %d jobs to finish: %d finished, %d failed, %d queued"
                 % (timeout_s, jobs, n_done, n_failed, len(q)))
        time.sleep(0.1)
    mem1 = steady_memory(r)
    if n_done != jobs or n_failed:
        fail("rq's registries count %d finished and %d failed of %d jobs" % (n_done, n_failed, jobs))

    ends, states = {}, {}
    for i in range(0, jobs, 5000):
        p = r.pipeline(transaction=False)
        for jid in ids[i:i + 5000]:
            p.hmget("rq:job:" + jid, "status", "ended_at")
        for jid, (status, ended) in zip(ids[i:i + 5000], p.execute()):
            status = status.decode() if status else "missing"
            states[status] = states.get(status, 0) + 1
            if status == "finished" and ended:
                ends[jid] = utc_us(ended.decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
    if len(ends) != jobs:
        fail("rq reports %s for %d jobs" % (states, jobs))
    starts = read_starts(lat_dir, "rq", ids, 10)
    return report(jobs, t0, starts, ends, mem0, mem1)


def report(jobs, t0, starts, ends, mem0, mem1):
    if len(starts) != jobs:
        fail("the workers logged taking %d of %d jobs" % (len(starts), jobs))
    lat = sorted(ends[j] - starts[j] for j in ends)
    secs = (max(ends.values()) - t0) / 1e6
    print("RESULT jobs=%d seconds=%.3f rate=%.1f p50_us=%d p99_us=%d redis_bytes_per_job=%.1f"
          % (jobs, secs, jobs / secs, quantile(lat, 0.5), quantile(lat, 0.99), (mem1 - mem0) / jobs))


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("celery", "rq"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    peer, sock, jobs, timeout_s, lat_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    (run_celery if peer == "celery" else run_rq)(sock, jobs, timeout_s, lat_dir)


if __name__ == "__main__":
    main()
