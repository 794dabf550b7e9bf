#!/usr/bin/env python3
"""faults.py: the fault-injection drill (issue #9).

Starts redis-server (AOF on), sf-coordinator, sf-learner and N sf-workers in
a private folder, keeps a steady load of `sleep` runs (two queued at all
times) and one small run of the method (`--method shift`, tiny settings, the
test models of tests/integration/lib.sh; a new one whenever the last is done,
one in all with --short), and meanwhile, at times drawn from a seeded RNG,
SIGKILLs or SIGSTOPs (then SIGCONTs) random workers, the coordinator, the
learner and redis-server, restarting what was killed (Redis on the same AOF
folder and socket).  Then it stops the faults, lets every run finish, and
checks from Redis and the data folder that every accepted job was done
exactly once, that each dataset's manifest and images match one to one, and
that the counters add up.  It prints a table and exits 1 on any loss,
duplicate, unfinished run or inconsistency.

  tools/faults.py [--seconds 300] [--seed 1] [--short] [--workers N]
                  [--bin build/bin] [--models DIR] [--keep]

--short is the version `make test` runs (60 s of faults, at least 10).
Standard library only; Redis is read with a small RESP client on its unix
socket.

Redis runs with `appendfsync always`: Redis then fsyncs the AOF before it
replies, so nothing it acknowledged can be lost by a SIGKILL (nor by a power
cut).  With `everysec` a SIGKILL of the process alone loses nothing Redis
has written to the kernel, but Redis postpones that write (and still
replies) while a previous background fsync is slow, up to 2 s; a SIGKILL
then loses acknowledged writes.  The coordinator rewrites the done bitmap,
the run hash, the per-class counters and the run index of every run it
holds after a reconnect, but a job's result, dead-letter entry, lease and
events are not kept in its memory and cannot be rewritten.  `--appendfsync
everysec` runs the drill the other way.
"""
import argparse
import ctypes
import heapq
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- a small RESP client ------------------------------------------------------


class RedisError(Exception):
    pass


class Redis:
    """One connection to Redis on a unix socket; reconnects on the next call
    after an error.  call() raises OSError when Redis is unreachable."""

    def __init__(self, path, timeout=2.0):
        self.path, self.timeout, self.sock, self.buf = path, timeout, None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise OSError("bad reply from redis: %r" % line[:40])

    def pipeline(self, cmds):
        try:
            if not self.sock:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(self.path)
                self.sock = s
            out = bytearray()
            for args in cmds:
                out += b"*%d\r\n" % len(args)
                for a in args:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
            self.sock.sendall(out)
            return [self._reply() for _ in cmds]
        except (OSError, ValueError):
            self.close()
            raise OSError("redis unreachable")

    def call(self, *args):
        r = self.pipeline([args])[0]
        if isinstance(r, RedisError):
            raise r
        return r


def s(v):
    return v.decode() if isinstance(v, bytes) else v


def hash_of(reply):
    if not isinstance(reply, list):
        return {}
    return {s(reply[i]): s(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


# ---- processes ------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # Its own process group (a terminal's ^C reaches only the drill, which
    # stops everything in order), and SIGKILL when the drill dies, on any
    # path, even a SIGKILL of the drill itself.
    os.setpgrp()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


ALL = []  # every Popen started, for the last cleanup


def spawn(argv, log, cwd=None):
    f = open(log, "ab")
    try:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=_child_setup, cwd=cwd or ROOT)
    finally:
        f.close()
    ALL.append(p)
    return p


class Proc:
    """A daemon the drill keeps up: state is "up", "stopped" (SIGSTOP) or
    "down" (killed, a restart pending)."""

    def __init__(self, name, argv, log):
        self.name, self.argv, self.log = name, argv, log
        self.p, self.state, self.busy, self.starts, self.exits = None, "down", False, 0, []

    def start(self):
        self.p = spawn(self.argv, self.log)
        self.state, self.starts = "up", self.starts + 1

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        if self.p:
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.state = "down"


def cleanup():
    for p in ALL:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in ALL:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


# ---- the drill --------------------------------------------------------------------

FAULTS = [
    # (key, label, weight)
    ("worker_kill", "worker SIGKILL, restarted", 3),
    ("worker_stop_short", "worker SIGSTOP < liveness", 2),
    ("worker_stop_long", "worker SIGSTOP > liveness", 2),
    ("coord_kill", "coordinator SIGKILL, restarted", 2),
    ("coord_stop_short", "coordinator SIGSTOP < liveness", 1),
    ("coord_stop_long", "coordinator SIGSTOP > liveness", 1),
    ("learner_kill", "learner SIGKILL, restarted", 2),
    ("redis_kill", "redis-server SIGKILL, restarted", 2),
]
LABEL = {k: label for k, label, _ in FAULTS}

HB_MS, LIVENESS = 250, 6  # the coordinator's: a worker silent 1.5 s is dead
SLEEP_CLASSES, SLEEP_ITEMS, SLEEP_MS = "builtin:imagenet-a-r-86", 5, 30
SINGLE_PHASES = ("manifest", "finetune")  # one job per run, counted toward no class


class Drill:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.bin = os.path.abspath(a.bin)
        self.dir = tempfile.mkdtemp(prefix="sf-faults.")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.data = os.path.join(self.dir, "data")
        self.rd = Redis(self.sock)
        self.events = []   # heap of (time, seq, fn)
        self.seq = 0
        self.faults = []   # dicts: kind, target, t
        self.samples = []  # (t, jobs done in Redis, summed over runs)
        self.runs = {}     # id -> {"kind": "sleep"|"shift", "total": n or None, "final": state or None, "done": n}
        self.unconfirmed = 0
        self.submit = None  # (Popen, kind, out path, expected total, offset)
        self.method_retry = 0.0
        self.problems = []
        self.notes = []
        self.method = os.path.exists(os.path.join(self.bin, "sf-learner")) and not a.no_method
        self.models = a.models or os.path.join(os.path.dirname(self.bin), "test-models")
        self.coord_ep = "ipc://" + os.path.join(self.dir, "clients.ipc")
        self.worker_ep = "ipc://" + os.path.join(self.dir, "workers.ipc")
        self.learner_ep = "ipc://" + os.path.join(self.dir, "learner.ipc")

    # ---- setup ------------------------------------------------------------------

    def log(self, msg):
        if not self.a.quiet:
            print("[%6.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    def train_models(self):
        # As tests/integration/lib.sh test_models does: sf-train caches, so
        # this costs nothing when the models are there.
        os.makedirs(self.models, exist_ok=True)
        log = os.path.join(self.models, "train.log")
        for what, scale in (("clip", "0.03"), ("sft", "0.1"), ("convnext", "0.02"), ("vit", "0.02")):
            p = spawn([os.path.join(self.bin, "sf-train"), what, "--out", self.models, "--threads", "2",
                       "--scale", scale], log)
            if p.wait() != 0:
                raise SystemExit("faults: cannot train the test models (see %s)" % log)

    def setup(self):
        self.t0 = time.monotonic()
        if self.method and not self.a.models:
            self.train_models()
        os.makedirs(os.path.join(self.dir, "redis"))
        L = lambda n: os.path.join(self.dir, n + ".log")  # noqa: E731
        self.redis = Proc("redis", ["redis-server", "--port", "0", "--unixsocket", self.sock,
                                    "--dir", os.path.join(self.dir, "redis"), "--appendonly", "yes",
                                    "--appendfsync", self.a.appendfsync, "--maxmemory-policy", "noeviction",
                                    "--save", ""], L("redis"))
        self.coord = Proc("coordinator", [os.path.join(self.bin, "sf-coordinator"), "--redis", "unix:" + self.sock,
                                          "--worker-endpoint", self.worker_ep, "--client-endpoint", self.coord_ep,
                                          "--heartbeat-ms", str(HB_MS), "--liveness", str(LIVENESS)],
                          L("coordinator"))
        self.learner = None
        if self.method:
            self.learner = Proc("learner", [os.path.join(self.bin, "sf-learner"), "--redis", "unix:" + self.sock,
                                            "--endpoint", self.learner_ep,
                                            "--checkpoint-dir", os.path.join(self.dir, "ckpt"),
                                            "--threads", "1", "--models-dir", self.models], L("learner"))
        self.workers = []
        for i in range(self.a.workers):
            argv = [os.path.join(self.bin, "sf-worker"), "--coordinator", self.worker_ep, "--worker-id", "w%d" % i,
                    "--heartbeat-ms", str(HB_MS), "--slots", "4", "--prefetch", "2", "--threads", "1"]
            if self.method:
                argv += ["--learner", self.learner_ep, "--models-dir", self.models, "--data-dir", self.data,
                         "--gpt2-vocab", os.path.join(ROOT, "data", "gpt2")]
            self.workers.append(Proc("worker w%d" % i, argv, L("worker-%d" % i)))
        self.procs = [self.redis, self.coord] + ([self.learner] if self.learner else []) + self.workers
        self.redis.start()
        self.wait_for(lambda: self.ping(), 10, "redis-server did not start")
        self.coord.start()
        self.wait_for(lambda: self.sfctl(["stats"], 1000) is not None, 30, "the coordinator did not answer")
        if self.learner:
            self.learner.start()
        for w in self.workers:
            w.start()

        def joined():
            out = self.sfctl(["workers", "--json"], 1000)
            return out is not None and out.count('"id"') >= len(self.workers)
        # Generous: each worker loads libtorch at start, slow on a busy box.
        self.wait_for(joined, 60, "the workers did not join")
        self.log("up in %s: redis (appendfsync %s), coordinator, %s%d workers" %
                 (self.dir, self.a.appendfsync, "learner, " if self.learner else "", len(self.workers)))

    def wait_for(self, cond, secs, what):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.1)
        raise SystemExit("faults: " + what)

    def ping(self):
        try:
            return self.rd.call("PING") == "PONG"
        except (OSError, RedisError):
            return False

    def sfctl(self, args, timeout_ms=3000):
        try:
            r = subprocess.run([os.path.join(self.bin, "sfctl"), "--coordinator", self.coord_ep, "--timeout",
                                str(timeout_ms)] + args, capture_output=True, text=True,
                               timeout=timeout_ms / 1000 + 5, preexec_fn=_child_setup)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout if r.returncode == 0 else None

    # ---- scheduling -------------------------------------------------------------

    def at(self, t, fn):
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, fn))

    def run_due(self, now, all_=False):
        while self.events and (all_ or self.events[0][0] <= now):
            _, _, fn = heapq.heappop(self.events)
            fn()

    # ---- load -----------------------------------------------------------------------

    def submit_run(self, kind):
        out = os.path.join(self.dir, "submit.out")
        sf = [os.path.join(self.bin, "sfctl"), "--coordinator", self.coord_ep, "--timeout", "4000", "submit"]
        if kind == "sleep":
            n = len(self.runs) + 1
            args = ["--classes", SLEEP_CLASSES, "--kind", "sleep", "--items-per-class", str(SLEEP_ITEMS),
                    "--payload", json.dumps({"ms": SLEEP_MS, "drill": n}), "--max-attempts", "20",
                    "--lease-ms", "3000", "--name", "faults-sleep-%d" % n]
            total = 86 * SLEEP_ITEMS
        else:
            seed = 7 + len([r for r in self.runs.values() if r["kind"] == "shift"])
            args = ["--method", "shift", "--classes", "stingray,junco,scorpion", "--ppo-updates", "6",
                    "--ppo", "batch_size=12", "--ppo", "mini_batch_size=4", "--ppo", "max_staleness=3",
                    "--rollouts-per-job", "4", "--captions-per-class", "5", "--images-per-caption", "2",
                    "--reference-images", "16", "--seed", str(seed), "--max-attempts", "10",
                    "--finetune-images-per-class", "0" if self.a.short else "2", "--finetune-steps", "2",
                    "--name", "faults-shift"]
            total = None
        p = spawn(sf + args, out)
        self.submit = (p, kind, out, total, os.path.getsize(out) if os.path.exists(out) else 0)

    def poll_submit(self):
        if not self.submit or self.submit[0].poll() is None:
            return
        p, kind, out, total, off = self.submit
        self.submit = None
        with open(out) as f:
            f.seek(off)
            text = f.read().strip()
        if p.returncode == 0 and text.startswith("r"):
            r = self.runs.setdefault(text.split()[0], {"final": None, "done": 0})
            r["kind"], r["total"] = kind, total
        else:
            # No answer (coordinator down or paused, Redis down): the run was
            # not accepted, or was and the answer was lost; the checks take
            # every run Redis has.
            self.unconfirmed += 1
            if kind == "shift":
                self.method_retry = time.monotonic() + 2

    def keep_load(self, now):
        self.poll_submit()
        if self.submit:
            return
        # One method run at a time: with --short one in all, else a new one
        # whenever the last has finished.
        shift = [r for r in self.runs.values() if r["kind"] == "shift"]
        if self.method and now >= self.method_retry and not any(not r["final"] for r in shift) and (
                not self.a.short or not shift):
            self.submit_run("shift")
            return
        active = [r for r in self.runs.values() if r["kind"] == "sleep" and not r["final"]]
        if len(active) < 2:
            self.submit_run("sleep")

    # ---- progress ----------------------------------------------------------------------

    def sample(self, now):
        try:
            ids = [s(x) for x in self.rd.call("ZRANGE", "sf:runs", "0", "-1")]
            todo = [i for i in ids if not (i in self.runs and self.runs[i]["final"])]
            reps = self.rd.pipeline([("HMGET", "sf:run:" + i, "state", "done") for i in todo])
        except (OSError, RedisError):
            return
        for i, rep in zip(todo, reps):
            if not isinstance(rep, list):
                continue
            r = self.runs.setdefault(i, {"kind": "unconfirmed", "total": None, "final": None, "done": 0})
            st = s(rep[0])
            r["done"] = int(rep[1] or 0)
            if st in ("done", "failed", "cancelled"):
                r["final"] = st
        self.samples.append((now, sum(r["done"] for r in self.runs.values())))

    # ---- faults --------------------------------------------------------------------------

    def plan_faults(self, start, secs, n):
        kinds = [k for k, _, _ in FAULTS if self.learner or k != "learner_kill"]
        weights = [w for k, _, w in FAULTS if self.learner or k != "learner_kill"]
        first = kinds[:]
        self.rng.shuffle(first)  # every kind at least once, then by weight
        for i in range(n):
            t = start + (i + self.rng.uniform(0.1, 0.9)) * secs / n
            kind = first[i] if i < len(first) else self.rng.choices(kinds, weights)[0]
            self.at(t, lambda k=kind: self.inject(k))

    def restart_later(self, proc, delay, fault=None):
        def restart():
            proc.start()
            proc.busy = False
            if fault:
                fault["back"] = time.monotonic()
        self.at(time.monotonic() + delay, restart)

    def inject(self, kind):
        now = time.monotonic()
        if kind.startswith("worker"):
            pool = [w for w in self.workers if not w.busy and w.state == "up"]
        else:
            pool = [p for p in {"coord": [self.coord], "learner": [self.learner], "redis": [self.redis]}
                    [kind.split("_")[0]] if p and not p.busy and p.state == "up"]
        if not pool:
            # Its target is already down or paused: another kind instead.
            alt = [k for k, _, _ in FAULTS if k != kind and (self.learner or k != "learner_kill")]
            kind = self.rng.choice(alt)
            return self.inject(kind) if self.rng.random() < 0.9 else None
        proc = self.rng.choice(pool)
        proc.busy = True
        fault = {"kind": kind, "target": proc.name, "t": now, "back": None}
        if kind.endswith("_kill"):
            proc.kill()
            delay = self.rng.uniform(0.2, 1.5)
            self.restart_later(proc, delay, fault)
            what = "SIGKILL, restart in %.1fs" % delay
        else:
            window = HB_MS * LIVENESS / 1000.0
            dur = self.rng.uniform(0.2, 0.6 * window) if kind.endswith("short") else self.rng.uniform(
                window + 0.5, window + 4.0)
            proc.signal(signal.SIGSTOP)
            proc.state = "stopped"

            def cont(p=proc):
                p.signal(signal.SIGCONT)
                p.state, p.busy = "up", False
                fault["back"] = time.monotonic()
            self.at(now + dur, cont)
            what = "SIGSTOP for %.1fs" % dur
        self.faults.append(fault)
        self.log("fault %d: %s %s" % (len(self.faults), proc.name, what))

    def supervise(self, now):
        # A daemon that exits by itself is a finding: it is logged, counted
        # and restarted as a supervisor (systemd, Kubernetes) would.
        for p in self.procs:
            if p.state in ("up", "stopped") and p.p and p.p.poll() is not None:
                rc = p.p.returncode
                p.exits.append(rc)
                self.log("%s exited by itself (status %s); restarting it" % (p.name, rc))
                p.state, p.busy = "down", True
                self.restart_later(p, 1.0)

    # ---- phases of the drill -------------------------------------------------------------

    def loop(self, until, load=True):
        while True:
            now = time.monotonic()
            if now >= until:
                return
            self.run_due(now)
            self.supervise(now)
            if load:
                self.keep_load(now)
            else:
                self.poll_submit()
            if not self.samples or now - self.samples[-1][0] >= 0.2:
                self.sample(now)
            time.sleep(0.05)

    def drive(self):
        secs = self.a.seconds
        start = time.monotonic()
        self.fault_start = start
        nfaults = max(10, int(round(secs / self.a.interval)))
        self.plan_faults(start + 3, secs - 3, nfaults)
        self.loop(start + secs)
        self.fault_end = time.monotonic()
        # The faults stop: what is down comes back, what is paused goes on.
        self.events = [e for e in self.events if e[2].__name__ in ("restart", "cont")]
        heapq.heapify(self.events)
        self.run_due(0, all_=True)
        self.log("faults over: %d injected; waiting for every run to finish" % len(self.faults))
        while self.submit:
            self.loop(time.monotonic() + 0.2, load=False)
        deadline = time.monotonic() + self.a.drain
        while time.monotonic() < deadline:
            self.loop(time.monotonic() + 0.5, load=False)
            if self.runs and all(r["final"] for r in self.runs.values()) and self.all_listed():
                break
        self.drained = time.monotonic()
        self.log("drained in %.1fs" % (self.drained - self.fault_end))

    def all_listed(self):
        try:
            return all(s(i) in self.runs for i in self.rd.call("ZRANGE", "sf:runs", "0", "-1"))
        except (OSError, RedisError):
            return False

    # ---- checks ---------------------------------------------------------------------------

    def problem(self, msg):
        self.problems.append(msg)

    def check(self):
        rd = self.rd
        self.jobs = self.lost = self.dup = self.dead = self.skipped = 0
        ids = [s(x) for x in rd.call("ZRANGE", "sf:runs", "0", "-1")]
        for rid in self.runs:
            if rid not in ids:
                r = self.runs[rid]
                self.problem("accepted run %s is not in sf:runs" % rid)
                self.lost += r["total"] or 1
        self.nsleep = self.nshift = 0
        for rid in ids:
            h = hash_of(rd.call("HGETALL", "sf:run:" + rid))
            if not h:
                self.problem("run %s is listed but has no hash" % rid)
                continue
            spec = json.loads(h.get("spec", "{}"))
            shift = spec.get("method") == "shift"
            self.nshift += shift
            self.nsleep += not shift
            total, skipped = int(h.get("total", 0)), int(h.get("skipped", 0) or 0)
            done_ctr, dead = int(h.get("done", 0)), int(h.get("dead", 0))
            bits = rd.call("GET", "sf:run:%s:done" % rid) or b""
            done = {i for i in range(len(bits) * 8) if bits[i // 8] & (0x80 >> (i % 8))}
            self.jobs += total - skipped
            self.skipped += skipped
            self.dead += dead
            if h.get("state") != "done":
                self.problem("run %s is %s (%s)" % (rid, h.get("state"), h.get("last_error", "")))
            beyond = {i for i in done if i >= total}
            if beyond:
                self.problem("run %s: done bits beyond its %d jobs" % (rid, total))
                self.dup += len(beyond)
            lost = total - skipped - len(done - beyond)
            if lost > 0:
                self.problem("run %s: %d of %d jobs never done (%d dead)" % (rid, lost, total - skipped, dead))
                self.lost += lost
            elif lost < 0:
                self.problem("run %s: %d done bits for %d jobs to run (%d skipped)" % (rid, len(done), total, skipped))
                self.dup += -lost
            if done_ctr != len(done):
                self.problem("run %s: done counter %d, done bits %d" % (rid, done_ctr, len(done)))
                self.dup += max(0, done_ctr - len(done))
            leases = rd.call("HLEN", "sf:run:%s:leases" % rid)
            if leases:
                self.problem("run %s: %d leases left behind" % (rid, leases))
            results = {int(k) for k in rd.call("HKEYS", "sf:run:%s:results" % rid)}
            if results - done:
                self.problem("run %s: %d results of jobs not done" % (rid, len(results - done)))
                self.dup += len(results - done)
            classes = hash_of(rd.call("HGETALL", "sf:run:%s:classes" % rid))
            class_done = sum(int(v) for k, v in classes.items() if k.endswith(":done"))
            if not shift:
                if results:
                    self.problem("run %s: %d results stored for sleep jobs, which report none" % (rid, len(results)))
                    self.dup += len(results)
                if class_done != len(done):
                    self.problem("run %s: per-class done sum %d, done bits %d" % (rid, class_done, len(done)))
                    self.dup += max(0, class_done - len(done))
            else:
                self.check_shift(rid, spec, done, results, classes, class_done)

    def check_shift(self, rid, spec, done, results, classes, class_done):
        st = self.sfctl(["status", rid, "--json"], 5000)
        if st is None:
            self.problem("run %s: sfctl status failed" % rid)
            return
        first, single, reporting = 0, set(), set()
        for ph in json.loads(st)["phases"]:
            rng = set(range(first, first + ph["total"]))
            if ph["name"] in SINGLE_PHASES:
                single |= rng
            if ph["name"] != "manifest":
                reporting |= rng  # every kind but manifest reports a result
            first += ph["total"]
        missing = (done & reporting) - results
        if missing:
            self.problem("run %s: %d done jobs have no result" % (rid, len(missing)))
        if class_done != len(done - single):
            self.problem("run %s: per-class done sum %d, per-class jobs done %d" % (rid, class_done,
                                                                                    len(done - single)))
            self.dup += max(0, class_done - len(done - single))
        per_class = spec.get("captions_per_class", 16) * spec.get("images_per_caption", 1)
        root = os.path.join(self.data, "datasets", rid)
        try:
            with open(os.path.join(root, "manifest.jsonl"), "rb") as f:
                raw = f.read().splitlines()
            entries = [json.loads(line.decode("utf-8", "replace")) for line in raw]
        except (OSError, ValueError) as e:
            self.problem("run %s: manifest: %s" % (rid, e))
            return
        bad = sum(1 for line in raw if line.decode("utf-8", "replace").encode() != line)
        if bad:
            # Not a fault-tolerance defect: a sampled caption can end in the
            # middle of a UTF-8 character (the byte-level BPE decodes bytes).
            self.notes.append("run %s: %d manifest lines are not valid UTF-8 (captions cut mid-character)" %
                              (rid, bad))
        ids = [e["id"] for e in entries]
        if len(ids) != len(set(ids)):
            self.problem("run %s: %d duplicate manifest ids" % (rid, len(ids) - len(set(ids))))
            self.dup += len(ids) - len(set(ids))
        kept = {e["file"] for e in entries if e.get("kept")}
        files, stray = set(), []
        for c in os.listdir(root):
            if os.path.isdir(os.path.join(root, c)):
                for f in os.listdir(os.path.join(root, c)):
                    (files.add(c + "/" + f) if f.endswith(".png") else stray.append(c + "/" + f))
        if kept - files:
            self.problem("run %s: %d manifest entries without their image" % (rid, len(kept - files)))
        if files - kept:
            self.problem("run %s: %d images without a kept manifest entry" % (rid, len(files - kept)))
        if stray:
            self.problem("run %s: %d stray files in the dataset: %s" % (rid, len(stray), " ".join(stray[:3])))
        wnids = {k.split(":")[0] for k in classes}
        for w in sorted(wnids):
            g = int(classes.get(w + ":generated", 0))
            k, x = int(classes.get(w + ":kept", 0)), int(classes.get(w + ":dropped", 0))
            mk = sum(1 for e in entries if e["class"] == w and e.get("kept"))
            mx = sum(1 for e in entries if e["class"] == w and not e.get("kept"))
            if g != per_class or k + x != g or (k, x) != (mk, mx):
                self.problem("run %s class %s: generated %d kept %d dropped %d; manifest kept %d dropped %d; "
                             "want %d images" % (rid, w, g, k, x, mk, mx, per_class))
                self.dup += max(0, g - per_class)

    # ---- report ----------------------------------------------------------------------------

    def recovery(self):
        """Per fault: how long its target was down or paused, and the seconds
        from the fault until the jobs done in Redis grew again once it was
        back (growth before that can be writes that were already in flight)."""
        out = {}
        for f in self.faults:
            back = f["back"] or f["t"]
            before = [v for t, v in self.samples if t <= back]
            v0 = before[-1] if before else 0
            after = [t for t, v in self.samples if t > back and v > v0]
            f["recovery"] = after[0] - f["t"] if after else None
            out.setdefault(f["kind"], []).append((back - f["t"], f["recovery"]))
        return out

    def logcount(self, name, text):
        try:
            with open(os.path.join(self.dir, name + ".log"), errors="replace") as f:
                return sum(text in line for line in f)
        except OSError:
            return 0

    def report(self):
        rec = self.recovery()
        fmt = lambda v: ("%.1f s" % v) if v is not None else "-"  # noqa: E731
        med = lambda v: statistics.median(v) if v else None  # noqa: E731
        print()
        print("Fault injection: seed %d, %d s of faults, %d workers, redis appendfsync %s" %
              (self.a.seed, round(self.fault_end - self.fault_start), len(self.workers), self.a.appendfsync))
        print()
        print("| fault | injected | down or paused (median) | recovery median | recovery max |")
        print("|---|---:|---:|---:|---:|")
        alld, allr = [], []
        for k, _, _ in FAULTS:
            if k not in rec:
                continue
            d = [x for x, _ in rec[k]]
            r = [x for _, x in rec[k] if x is not None]
            alld, allr = alld + d, allr + r
            print("| %s | %d | %s | %s | %s |" % (LABEL[k], len(rec[k]), fmt(med(d)), fmt(med(r)),
                                                   fmt(max(r) if r else None)))
        print("| **all** | **%d** | %s | %s | %s |" % (len(self.faults), fmt(med(alld)), fmt(med(allr)),
                                                       fmt(max(allr) if allr else None)))
        print()
        print("| runs | jobs | lost | duplicated | dead | skipped | unanswered submits | drain |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("| %d sleep + %d shift | %d | %d | %d | %d | %d | %d | %.0f s |" %
              (self.nsleep, self.nshift, self.jobs, self.lost, self.dup, self.dead, self.skipped,
               self.unconfirmed, self.drained - self.fault_end))
        print()
        exits = ["%s %s" % (p.name, p.exits) for p in self.procs if p.exits]
        print("coordinator: %d starts, %d resyncs after a Redis reconnect, %d batches refused by Redis and sent "
              "again, %d rollout windows reopened; learner: %d resumes from checkpoint; daemons that exited by "
              "themselves: %s" %
              (self.coord.starts, self.logcount("coordinator", "rewriting the state"),
               self.logcount("coordinator", "a batch was refused") + self.logcount("coordinator", "a batch failed"),
               self.logcount("coordinator", "the learner has waited"),
               self.logcount("learner", "resumed from checkpoint"), ", ".join(exits) or "none"))
        print("Legend: jobs = jobs of every run Redis lists, skipped rollout jobs left out (a PPO phase ends when "
              "the learner is done); lost = accepted but never done (no done bit); duplicated = recorded twice "
              "(run or per-class done counter above the done bits, a result of a job not done, a duplicate "
              "manifest id, images counted twice).  A job may run twice (at-least-once execution, e.g. after "
              "a worker SIGKILL); only its record must be single.  Recovery = from the fault until the jobs "
              "done in Redis grow again after the target is back (restarted or continued).")
        if len(self.faults) < self.a.min_faults:
            self.problem("only %d faults injected, want %d" % (len(self.faults), self.a.min_faults))
        for n in self.notes:
            print("NOTE: " + n)
        for p in self.problems:
            print("PROBLEM: " + p)
        return not self.problems and self.lost == 0 and self.dup == 0

    def verdict(self, ok):
        if not ok:
            self.tails()
            for p in self.problems:
                print("PROBLEM: " + p)
        print("faults: %s (%d faults; %d jobs, %d lost, %d duplicated)" %
              ("PASS" if ok else "FAIL", len(self.faults), self.jobs, self.lost, self.dup))

    def tails(self):
        for n in sorted(os.listdir(self.dir)):
            if n.endswith(".log"):
                print("--- " + n)
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    for line in f.readlines()[-15:]:
                        print("    " + line.rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300, help="how long faults are injected (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    ap.add_argument("--interval", type=float, default=3.75, help="mean seconds between faults (default 3.75)")
    ap.add_argument("--workers", type=int, default=4, help="sf-worker processes (default 4; 3 with --short)")
    ap.add_argument("--short", action="store_true", help="the make-test version: 60 s, 3 workers")
    ap.add_argument("--drain", type=int, default=None, help="seconds to wait for runs after the faults")
    ap.add_argument("--bin", default=os.environ.get("SF_BIN", os.path.join(ROOT, "build", "bin")))
    ap.add_argument("--models", help="the tiny world models (default: BIN/../test-models, trained if missing)")
    ap.add_argument("--appendfsync", default="always", choices=("always", "everysec"))
    ap.add_argument("--no-method", action="store_true", help="sleep runs only (no learner)")
    ap.add_argument("--keep", action="store_true", default=bool(os.environ.get("SF_KEEP")),
                    help="keep the private folder (logs, AOF, data)")
    ap.add_argument("--min-faults", type=int, help="fail with fewer (default 10 with --short, 50 for 300 s)")
    ap.add_argument("--quiet", action="store_true", help="only the table")
    a = ap.parse_args()
    if a.short:
        a.seconds = min(a.seconds, 60)
        if "--workers" not in sys.argv:
            a.workers = 3
    if a.min_faults is None:
        a.min_faults = 10 if a.short else 50 if a.seconds >= 300 else 1
    if a.drain is None:
        a.drain = 150 if a.short else 300
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    d = Drill(a)
    ok = False
    try:
        d.setup()
        d.drive()
        d.check()
        ok = d.report()
        d.verdict(ok)
    except (Exception, SystemExit) as e:
        # A broken drill (a daemon that never came up, Redis unreadable at the
        # end) says why and shows the logs; a signal just stops.
        if not isinstance(e, SystemExit):
            traceback.print_exc()
        elif isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        if isinstance(e, SystemExit) and not isinstance(e.code, str):
            raise
        d.tails()
        raise SystemExit(1)
    finally:
        cleanup()
        if a.keep:
            print("faults: kept %s" % d.dir)
        else:
            shutil.rmtree(d.dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
