"""The RQ side of tools/bench_peers.sh: the no-op job and two worker classes.

TimedWorker is RQ's default Worker (a work horse forked for each job) and
TimedSimpleWorker its SimpleWorker (the job runs in the worker process); each
only observes, writing to local files and never to Redis:
- register_birth touches $PEERS_READY_DIR/rq.<pid> once the worker is
  registered, so the bench starts submitting once every worker is up;
- execute_job, called in the worker process right after it has popped the
  job off the queue (before any fork), appends "<job id> <wall clock in us>"
  to $PEERS_LAT_DIR/rq.<pid>.log.  The end of each job's latency is the
  ended_at that RQ stores with the job when it saves the result.
"""
import os
import time

from rq.worker import SimpleWorker, Worker


def noop():
    return None


class _Timed:
    _fd = -1

    def register_birth(self):
        super().register_birth()
        with open(os.path.join(os.environ["PEERS_READY_DIR"], "rq.%d" % os.getpid()), "w") as f:
            f.write("%d\n" % os.getpid())

    def execute_job(self, job, queue):
        if self._fd < 0:
            self._fd = os.open(os.path.join(os.environ["PEERS_LAT_DIR"], "rq.%d.log" % os.getpid()),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, b"%s %d\n" % (job.id.encode(), time.time_ns() // 1000))
        return super().execute_job(job, queue)


class TimedWorker(_Timed, Worker):
    pass


class TimedSimpleWorker(_Timed, SimpleWorker):
    pass
