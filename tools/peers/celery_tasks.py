"""The Celery app of tools/bench_peers.sh: one no-op task on a private Redis.

Broker and result backend are both the Redis at $PEERS_REDIS_SOCK (a unix
socket).  Every setting is Celery's default: JSON messages, prefetch
multiplier 4, acks on receipt, results kept for result_expires (one day).

Two signal handlers only observe; they write to local files, never to Redis:
- worker_ready touches $PEERS_READY_DIR/celery.<pid> so the bench starts
  submitting once every worker is up;
- task_received (in the worker's main process, when its consumer gets the
  message from Redis: the moment the task is taken for that worker) appends
  "<task id> <wall clock in us>" to $PEERS_LAT_DIR/celery.<pid>.log.  The end
  of each task's latency is the date_done that Celery stores with its result.
"""
import os
import time

from celery import Celery
from celery.signals import task_received, worker_ready

_url = "redis+socket://" + os.environ["PEERS_REDIS_SOCK"]
app = Celery("peers", broker=_url, backend=_url)


@app.task(name="noop")
def noop():
    return None


_log = {"pid": None, "fd": -1}


@task_received.connect
def _on_received(sender=None, request=None, **kw):
    # A prefork child inherits the parent's state: open per process.
    if _log["pid"] != os.getpid():
        _log["pid"] = os.getpid()
        _log["fd"] = os.open(os.path.join(os.environ["PEERS_LAT_DIR"], "celery.%d.log" % os.getpid()),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_log["fd"], b"%s %d\n" % (request.id.encode(), time.time_ns() // 1000))


@worker_ready.connect
def _on_ready(sender=None, **kw):
    with open(os.path.join(os.environ["PEERS_READY_DIR"], "celery.%d" % os.getpid()), "w") as f:
        f.write("%d\n" % os.getpid())
