#!/usr/bin/env python3
"""faults.py: the fault-injection drill (issues #9, #19).

Starts redis-server (AOF on, `appendfsync always` as `sfctl up` and deploy/
ship it), sf-coordinator, sf-learner and N sf-workers, each a host in its own
network namespace (tools/faultnet.py: veths to a bridge, 10.99.0.0/24, TCP
between them), keeps a steady load of `sleep` runs (two queued at all times)
and one small run of the method (`--method shift`, tiny settings, the test
models of tests/integration/lib.sh; a new one whenever the last is done, one
in all with --short), and meanwhile, at times drawn from a seeded RNG,
injects faults:
  processes  SIGKILL (restarted) of a worker, the coordinator, the learner and
             redis-server (on the same AOF folder); SIGSTOP then SIGCONT of a
             worker or the coordinator (shorter and longer than the liveness
             window), of the learner and of redis-server (short and long);
  network    nftables drop rules inside the namespaces: a worker cut off from
             everyone for less and for more than its liveness, a worker's link
             down then up, the coordinator cut off from Redis, the learner cut
             off (workers and Redis), Redis cut off from everyone; and windows
             of 1% packet loss on every link (each host drops 1% of what it
             sends), long enough for whole runs to start and finish inside.
Then it stops the faults, lets every run finish and judges exactly-once
against an independent ledger: each worker runs with `--ledger FILE` (a test
option, worker/ledger.h) and appends `run job attempt worker epoch hash` for
every OK result it sends, to a file the coordinator never touches.  Every job
of every run Redis lists (and every run sfctl saw accepted) must be done, with
exactly one accepted effect: a result in Redis matching one ledger line (the
sleep jobs' results name the execution that was applied; the method's match by
payload hash), none lost, none applied twice; counters must equal the done
bitmap, and each dataset's manifest and images must match one to one.
While faults run, it also checks that the coordinator never reports a job
done that Redis lacks (sfctl status against the done bitmap, read after).
It prints a table and exits 1 on any loss, duplicate, unfinished run or
inconsistency.

  tools/faults.py [--seconds 300] [--seed 1] [--short] [--workers N]
                  [--bin build/bin] [--models DIR] [--local] [--keep]

--short is the version `make test` runs (60 s of faults).  Network
namespaces need root, ip and nft: without them the drill exits 77 saying why,
and --local runs the process faults alone on one host (unix socket, ipc).
Standard library only; the drill reads Redis with a small RESP client on
Redis's unix socket, which no network fault touches (the observer is never
partitioned).

Redis runs with `appendfsync always` by default, the shipped setting
(docs/operators.md): Redis fsyncs the AOF before it replies, so nothing it
acknowledged can be lost by a SIGKILL (nor by a power cut).  With `everysec`
Redis postpones a write while a previous background fsync is slow, and still
replies; a SIGKILL then loses acknowledged writes, among them results,
dead-letter entries and events the coordinator no longer holds.
`--appendfsync everysec` runs the drill that way.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultnet  # noqa: E402

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
NET = None  # the faultnet.Net of the drill, when its hosts are namespaces


def _child_setup(host=None):
    # Its own process group (a terminal's ^C reaches only the drill, which
    # stops everything in order), SIGKILL when the drill dies, on any path,
    # even a SIGKILL of the drill itself; and into its host's namespace.
    os.setpgrp()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if host and NET:
        NET.enter(host)


ALL = []  # every Popen started, for the last cleanup


def spawn(argv, log, host=None, cwd=None):
    f = open(log, "ab")
    try:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: _child_setup(host), cwd=cwd or ROOT)
    finally:
        f.close()
    ALL.append(p)
    return p


class Proc:
    """A daemon the drill keeps up: state is "up", "stopped" (SIGSTOP) or
    "down" (killed, a restart pending).  host: its namespace (None: the
    drill's own)."""

    def __init__(self, name, argv, log, host=None, wid=None):
        self.name, self.argv, self.log, self.host, self.wid = name, argv, log, host, wid
        self.p, self.state, self.busy, self.starts, self.exits = None, "down", False, 0, []

    def start(self):
        self.p = spawn(self.argv, self.log, self.host)
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
    # The namespaces go once nothing is left inside them.
    if NET:
        NET.destroy()


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def fnv1a(data):
    """FNV-1a 64 from the tree's basis (common/runtime/hash.h), as the
    worker's ledger hashes a result payload."""
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---- the drill --------------------------------------------------------------------

FAULTS = [
    # (key, label, weight, what it needs: "net" namespaces, "learner" a method run)
    ("worker_kill", "worker SIGKILL, restarted", 3, ""),
    ("worker_stop_short", "worker SIGSTOP < liveness", 2, ""),
    ("worker_stop_long", "worker SIGSTOP > liveness", 2, ""),
    ("worker_cut_short", "worker partitioned < liveness", 2, "net"),
    ("worker_cut_long", "worker partitioned > liveness", 2, "net"),
    ("worker_link", "worker link down, then up", 2, "net"),
    ("coord_kill", "leader SIGKILL (the standby leads), restarted", 2, ""),
    ("coord_stop_short", "leader SIGSTOP < liveness", 1, ""),
    ("coord_stop_long", "leader SIGSTOP > liveness", 1, ""),
    ("coord_cut", "leader cut off from Redis", 2, "net"),
    ("coord_lease_cut", "leader cut off from Redis past its lease (the standby leads)", 2, "net"),
    ("learner_kill", "learner SIGKILL, restarted", 2, "learner"),
    ("learner_stop_short", "learner SIGSTOP < 1 s", 1, "learner"),
    ("learner_stop_long", "learner SIGSTOP 2-6 s", 1, "learner"),
    ("learner_cut", "learner partitioned", 2, "learner net"),
    ("redis_kill", "redis-server SIGKILL, restarted", 2, ""),
    ("redis_stop_short", "redis-server SIGSTOP < 1 s", 1, ""),
    ("redis_stop_long", "redis-server SIGSTOP 2-6 s", 1, ""),
    ("redis_cut", "redis-server partitioned", 2, "net"),
    # Windows of the drill, not drawn: each host drops 1% of what it sends.
    ("loss", "1% packet loss on every link", 0, "net"),
]
LABEL = {k: label for k, label, _, _ in FAULTS}
# What a full drill in namespaces must have injected at least once (issue 19).
REQUIRED = ("worker_cut_short", "worker_cut_long", "learner_cut", "redis_cut", "coord_cut", "loss", "coord_kill",
            "coord_lease_cut",
            "learner_stop_short", "learner_stop_long", "redis_stop_short", "redis_stop_long")
# Faults after which the worker must be heard again, and whose leased jobs
# are followed to the end (the worker's late results must not be applied).
WORKER_WATCH = ("worker_kill", "worker_stop_long", "worker_cut_short", "worker_cut_long", "worker_link")
# Faults during which the coordinator cannot reach Redis.
REDIS_AWAY = ("coord_cut", "coord_lease_cut", "redis_cut", "redis_stop_short", "redis_stop_long", "redis_kill")

HB_MS, LIVENESS = 250, 6  # the coordinator's: a worker silent 1.5 s is dead
LEASE_MS = 3000           # the leader lease (the shipped default): a standby leads this long after
SLEEP_CLASSES, SLEEP_ITEMS, SLEEP_MS = "builtin:imagenet-a-r-86", 5, 30
SINGLE_PHASES = ("manifest", "finetune")  # one job per run, counted toward no class
# The scripted drill: (seconds after the start, kind, worker, seconds).  The
# learner's cut-off waits (up to 40 s) for a PPO phase.
SCENARIO = [
    (1, "learner_cut", None, 3.0),
    (2, "loss", None, 22),
    (4, "worker_cut_short", "w0", 0.3),
    (8, "worker_cut_long", "w1", 4.0),
    (15, "coord_cut", None, 3.0),
    (21, "redis_cut", None, 2.0),
    (25, "worker_link", "w2", 3.0),
    (31, "learner_stop_long", None, 3.0),
    (32, "redis_stop_long", None, 3.0),
    (37, "worker_kill", "w0", 0.5),
    (40, "redis_kill", None, 0.5),
    (43, "coord_lease_cut", None, 5.0),
    (51, "coord_kill", None, 0.5),
]
SCENARIO_S = 55
REJOIN_S = 60  # a worker must be heard again this long after its fault ends
HOSTS = {"redis": 2, "coord": 3, "learner": 4, "ctl": 5, "coord2": 6}  # + w<i>: 10 + i (faultnet.SUBNET)


class Drill:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.bin = os.path.abspath(a.bin)
        self.dir = tempfile.mkdtemp(prefix="sf-faults.")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.data = os.path.join(self.dir, "data")
        self.ledger_dir = os.path.join(self.dir, "ledger")
        # Short: a SIGSTOPped Redis must not stall the drill's loop (it is
        # not asked while paused, but may be paused between two calls).
        self.rd = Redis(self.sock, timeout=0.5)
        self.events = []   # heap of (time, seq, fn)
        self.seq = 0
        self.faults = []   # dicts: kind, target, t, back, and what the kind records
        self.samples = []  # (t, jobs done in Redis, summed over runs)
        self.runs = {}     # id -> {"kind": "sleep"|"shift", "total": n or None, "final": state or None, "done": n}
        self.unconfirmed = 0
        self.stepdowns = 0
        self.submit = None  # (Popen, kind, out path, expected total, offset)
        self.method_retry = 0.0
        self.problems = []
        self.notes = []
        self.watch = []    # worker faults waiting for their worker to be heard again
        self.active = []   # faults in force now
        self.probe = None  # (Popen, run id, during a Redis fault, start)
        self.answer = None  # (status, run id, during a Redis fault): its Redis side still to read
        self.probe_next = 0.0
        self.probes = {"n": 0, "redis_away": 0, "bad": 0}
        self.windows = []  # (wall start ms, wall end ms) of the loss windows
        self.seen = {}     # (run, job) -> hash of its result when the drill first read it
        self.changed = set()
        self.results_next, self.results_turn = 0.0, 0
        self.net = a.net
        self.method = os.path.exists(os.path.join(self.bin, "sf-learner")) and not a.no_method
        self.models = a.models or os.path.join(os.path.dirname(self.bin), "test-models")
        if self.net:
            ip = lambda h: "%s.%d" % (faultnet.SUBNET, HOSTS.get(h) or 10 + int(h[1:]))  # noqa: E731
            self.redis_addr = "%s:6379" % ip("redis")
            # Two coordinators, one leading, one a standby: each binds its own
            # address; workers and sfctl are given both.
            self.coord_eps = ["tcp://%s:5556" % ip(h) for h in ("coord", "coord2")]
            self.worker_eps = ["tcp://%s:5555" % ip(h) for h in ("coord", "coord2")]
            self.learner_ep = "tcp://%s:5557" % ip("learner")
            self.redis_ip = ip("redis")
        else:
            self.redis_addr = "unix:" + self.sock
            self.coord_eps = ["ipc://" + os.path.join(self.dir, n + ".ipc") for n in ("clients", "clients-b")]
            self.worker_eps = ["ipc://" + os.path.join(self.dir, n + ".ipc") for n in ("workers", "workers-b")]
            self.learner_ep = "ipc://" + os.path.join(self.dir, "learner.ipc")
        self.coord_ep, self.worker_ep = ",".join(self.coord_eps), ",".join(self.worker_eps)

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
        global NET
        self.t0 = time.monotonic()
        if self.method and not self.a.models:
            self.train_models()
        os.makedirs(os.path.join(self.dir, "redis"))
        os.makedirs(self.ledger_dir)
        wids = ["w%d" % i for i in range(self.a.workers)]
        if self.net:
            NET = faultnet.Net(dict(HOSTS, **{w: 10 + i for i, w in enumerate(wids)}))
            NET.create()
        host = (lambda h: h) if self.net else (lambda h: None)  # noqa: E731
        L = lambda n: os.path.join(self.dir, n + ".log")  # noqa: E731
        # Redis listens on its host's address for the daemons, and on a unix
        # socket for the drill, which no rule touches.
        listen = ["--bind", self.redis_ip, "--port", "6379", "--protected-mode", "no"] if self.net else ["--port", "0"]
        self.redis = Proc("redis", ["redis-server"] + listen + [
            "--unixsocket", self.sock, "--dir", os.path.join(self.dir, "redis"), "--appendonly", "yes",
            "--appendfsync", self.a.appendfsync, "--maxmemory-policy", "noeviction", "--save", ""],
            L("redis"), host("redis"))
        self.coords = [Proc(name, [os.path.join(self.bin, "sf-coordinator"), "--redis", self.redis_addr,
                                   "--worker-endpoint", wep, "--client-endpoint", cep, "--heartbeat-ms", str(HB_MS),
                                   "--liveness", str(LIVENESS), "--leader-lease-ms", str(LEASE_MS)], L(log), host(h))
                       for name, log, h, wep, cep in (("coordinator", "coordinator", "coord", self.worker_eps[0],
                                                       self.coord_eps[0]),
                                                      ("coordinator b", "coordinator-b", "coord2", self.worker_eps[1],
                                                       self.coord_eps[1]))]
        self.learner = None
        if self.method:
            self.learner = Proc("learner", [os.path.join(self.bin, "sf-learner"), "--redis", self.redis_addr,
                                            "--endpoint", self.learner_ep,
                                            "--checkpoint-dir", os.path.join(self.dir, "ckpt"),
                                            "--threads", "1", "--models-dir", self.models], L("learner"),
                                host("learner"))
        self.workers = []
        for i, w in enumerate(wids):
            argv = [os.path.join(self.bin, "sf-worker"), "--coordinator", self.worker_ep, "--worker-id", w,
                    "--heartbeat-ms", str(HB_MS), "--slots", "4", "--prefetch", "2", "--threads", "1",
                    "--ledger", os.path.join(self.ledger_dir, w + ".log")]
            if self.method:
                argv += ["--learner", self.learner_ep, "--models-dir", self.models, "--data-dir", self.data,
                         "--gpt2-vocab", os.path.join(ROOT, "data", "gpt2")]
            self.workers.append(Proc("worker " + w, argv, L("worker-%d" % i), host(w), w))
        self.procs = [self.redis] + self.coords + ([self.learner] if self.learner else []) + self.workers
        self.redis.start()
        self.wait_for(lambda: self.ping(), 10, "redis-server did not start")
        self.coords[0].start()
        self.wait_for(lambda: self.sfctl(["stats"], 1000) is not None, 30, "the coordinator did not answer")
        self.coords[1].start()  # a standby: it waits for the lease
        if self.learner:
            self.learner.start()
        for w in self.workers:
            w.start()

        def joined():
            out = self.sfctl(["workers", "--json"], 1000)
            return out is not None and out.count('"id"') >= len(self.workers)
        # Generous: each worker loads libtorch at start, slow on a busy box.
        self.wait_for(joined, 60, "the workers did not join")
        self.log("up in %s: redis (appendfsync %s), coordinator, %s%d workers, %s" %
                 (self.dir, self.a.appendfsync, "learner, " if self.learner else "", len(self.workers),
                  "each in its own network namespace (%s-*), over TCP" % NET.tag if self.net
                  else "on this host (unix socket, ipc)"))

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

    def sfctl_argv(self, args, timeout_ms):
        return [os.path.join(self.bin, "sfctl"), "--coordinator", self.coord_ep, "--timeout", str(timeout_ms)] + args

    def sfctl(self, args, timeout_ms=3000):
        try:
            r = subprocess.run(self.sfctl_argv(args, timeout_ms), capture_output=True, text=True,
                               timeout=timeout_ms / 1000 + 5,
                               preexec_fn=lambda: _child_setup("ctl" if self.net else None))
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
        sf = self.sfctl_argv(["submit"], 4000)
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
        p = spawn(sf + args, out, "ctl" if self.net else None)
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

    def redis_up(self):
        return self.redis.state == "up"

    def sample(self, now):
        if not self.redis_up():
            return
        try:
            ids = [s(x) for x in self.rd.call("ZRANGE", "sf:runs", "0", "-1")]
            todo = [i for i in ids if not (i in self.runs and self.runs[i]["final"])]
            watched = [f for f in self.watch] + [f for f in self.active if f["kind"] in WORKER_WATCH]
            reps = self.rd.pipeline([("HMGET", "sf:run:" + i, "state", "done") for i in todo] +
                                    [("ZSCORE", "sf:workers", f["wid"]) for f in watched])
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
        for f, score in zip(watched, reps[len(todo):]):
            if f in self.active:
                # While the fault lasts: has the coordinator given it up?
                if score is None:
                    f["dead_seen"] = True
            elif score is not None and float(s(score)) >= f["back_wall_ms"]:
                # Heard again after the fault ended: it rejoined.
                f["rejoin"] = now - f["back"]
                self.watch.remove(f)
        self.samples.append((now, sum(r["done"] for r in self.runs.values())))
        self.watch_results(now)

    def watch_results(self, now):
        """A result, once in Redis, must never change: the job's effect was
        applied, and a second application (a done job run and taken again,
        even where the counters are rebuilt from the bitmap after a restart)
        would replace it.  Read one running run's results every half second
        and compare with what was seen before."""
        live = [i for i, r in self.runs.items() if not r["final"]]
        if not live or now < self.results_next:
            return
        self.results_next = now + 0.5
        rid = live[self.results_turn % len(live)]
        self.results_turn += 1
        try:
            rep = self.rd.call("HGETALL", "sf:run:%s:results" % rid)
        except (OSError, RedisError):
            return
        for i in range(0, len(rep) - 1, 2):
            key, h = (rid, int(rep[i])), fnv1a(rep[i + 1])
            if self.seen.setdefault(key, h) != h:
                self.changed.add(key)

    def probe_done(self, now):
        """Nothing the coordinator reports done may be missing from Redis: its
        status of a running run (done counts only acknowledged jobs) against
        the done bitmap read after the answer (bits only grow), most often
        while the coordinator cannot reach Redis."""
        away = [f for f in self.active if f["kind"] in REDIS_AWAY]
        if self.probe and self.probe[0].poll() is not None:
            p, rid, was_away, _ = self.probe
            self.probe = None
            out = p.stdout.read() if p.returncode == 0 else ""
            p.stdout.close()
            try:
                st = json.loads(out) if out else None
            except ValueError:
                st = None
            if st:
                self.answer = (st, rid, was_away)
        elif self.probe and now - self.probe[3] > 15:
            self.probe[0].kill()
        if self.answer and self.redis_up():
            # Read after the answer, whenever Redis can be read (it may be
            # paused now): the bitmap only grows, so a later read can only
            # make the check easier to pass, never fail wrongly.
            st, rid, was_away = self.answer
            try:
                bits, state = self.rd.pipeline([("BITCOUNT", "sf:run:%s:done" % rid), ("HGET", "sf:run:" + rid,
                                                                                            "state")])
            except OSError:
                bits = None
            if isinstance(bits, int):
                self.answer = None
                self.probes["n"] += 1
                self.probes["redis_away"] += bool(was_away)
                for f in was_away:
                    f["probes"] = f.get("probes", 0) + 1
                if st.get("done", 0) > bits or (st.get("state") == "done" and s(state) != "done"):
                    self.probes["bad"] += 1
                    self.problem("the coordinator reported run %s %s with %d jobs done; Redis has %d done bits, "
                                 "state %s" % (rid, st.get("state"), st.get("done", 0), bits, s(state)))
        if self.probe or self.answer or now < self.probe_next:
            return
        live = [i for i, r in self.runs.items() if not r["final"] and r["kind"] == "sleep"]
        if not live:
            return
        rid = live[self.probes["n"] % len(live)]  # not the fault RNG: the schedule stays the seed's
        p = subprocess.Popen(self.sfctl_argv(["status", rid, "--json"], 3000), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                             preexec_fn=lambda: _child_setup("ctl" if self.net else None))
        ALL.append(p)
        self.probe = (p, rid, away, now)  # the answer is about those faults
        self.probe_next = now + (0.3 if away else 1.0)

    # ---- faults --------------------------------------------------------------------------

    def kinds(self):
        have = {"net": self.net, "learner": bool(self.learner)}
        return [(k, w) for k, _, w, needs in FAULTS if w and all(have[n] for n in needs.split())]

    def plan_faults(self, start, secs, n):
        kinds = [k for k, _ in self.kinds()]
        weights = [w for _, w in self.kinds()]
        first = kinds[:]
        self.rng.shuffle(first)  # every kind at least once, then by weight
        for i in range(n):
            t = start + (i + self.rng.uniform(0.1, 0.9)) * secs / n
            kind = first[i] if i < len(first) else self.rng.choices(kinds, weights)[0]
            self.at(t, lambda k=kind: self.inject(k))
        if self.net:
            # Loss windows: long enough for whole sleep runs to be submitted,
            # run and finished inside (checked), the other faults going on.
            if self.a.short:
                wins = [(start + 12, 24)]
            else:
                wins = [(start + off, 25) for off in range(27, int(secs) - 25, 100)]
            for t, dur in wins:
                self.at(t, lambda d=dur: self.inject_loss(d))

    def plan_scenario(self, start):
        """The scripted drill (--scenario, tests/integration/test_netfaults.sh):
        each network fault once, at set times and for set lengths, checked
        one by one (check_faults)."""
        planned = [x for x in SCENARIO if self.learner or not x[1].startswith("learner")]
        self.a.min_faults = len(planned)  # every one of them, or the scenario was not run
        for t, kind, wid, dur in planned:
            if kind == "loss":
                self.at(start + t, lambda d=dur: self.inject_loss(d))
            else:
                # Only the learner's cut-off must find PPO running (it waits).
                self.at(start + t, lambda k=kind, w=wid, d=dur: self.inject(k, pick=w, dur=d,
                                                                            wait=40 if k == "learner_cut" else 0))

    def restart_later(self, proc, delay, fault=None):
        def heal():
            proc.start()
            proc.busy = False
            if fault:
                self.ended(fault)
        self.at(time.monotonic() + delay, heal)

    def ended(self, fault):
        fault["back"] = time.monotonic()
        fault["back_wall_ms"] = time.time() * 1000
        if fault in self.active:
            self.active.remove(fault)
        if fault["kind"] in WORKER_WATCH:
            self.watch.append(fault)

    def ppo_running(self):
        if not self.redis_up():
            return False
        try:
            ids = [s(i) for i, r in self.runs.items() if r["kind"] == "shift" and not r["final"]]
            return any(s(self.rd.call("HGET", "sf:run:" + i, "phase")) == "rollout" for i in ids)
        except (OSError, RedisError):
            return False

    def held_by(self, wid):
        """The jobs Redis says are leased to worker wid: [(run, index, attempt)]."""
        live = [i for i, r in self.runs.items() if not r["final"]]
        if not self.redis_up():
            return []
        try:
            reps = self.rd.pipeline([("HGETALL", "sf:run:%s:leases" % i) for i in live])
        except OSError:
            return []
        held = []
        for rid, rep in zip(live, reps):
            for k, v in hash_of(rep).items():
                f = v.split()
                if len(f) == 3 and f[0] == wid:
                    held.append((rid, int(k), int(f[1])))
        return held

    def inject(self, kind, tries=0, pick=None, dur=None, wait=8):
        """Injects one fault of kind on a random target (pick: that worker),
        lasting dur (default: drawn for the kind)."""
        now = time.monotonic()
        if kind.startswith("learner") and tries < wait and not self.ppo_running():
            # A learner fault is worth most mid-PPO: wait a little for it.
            self.at(now + 1.0, lambda: self.inject(kind, tries + 1, pick, dur, wait))
            return
        if kind.startswith("worker"):
            pool = [w for w in self.workers if not w.busy and w.state == "up" and pick in (None, w.wid)]
        else:
            pool = [p for p in {"coord": [self.leader()], "learner": [self.learner], "redis": [self.redis]}
                    [kind.split("_")[0]] if p and not p.busy and p.state == "up"]
        if not pool and self.a.scenario:
            self.problem("the scenario's %s found its target busy" % LABEL[kind])
            return
        if not pool:
            # Its target is already down, paused or cut off: another kind instead.
            alt = [k for k, _ in self.kinds() if k != kind]
            kind = self.rng.choice(alt)
            return self.inject(kind, 8) if self.rng.random() < 0.9 else None
        proc = self.rng.choice(pool)
        proc.busy = True
        fault = {"kind": kind, "target": proc.name, "t": now, "back": None, "wid": proc.wid}
        if kind.startswith("learner"):
            fault["mid_ppo"] = self.ppo_running()
        if kind in WORKER_WATCH:
            fault["held"] = self.held_by(proc.wid)
        window = HB_MS * LIVENESS / 1000.0
        what = kind.split("_")[1]
        if what == "kill":
            proc.kill()
            delay = dur or self.rng.uniform(0.2, 1.5)
            self.restart_later(proc, delay, fault)
            desc = "SIGKILL, restart in %.1fs" % delay
        else:
            if dur is not None:
                pass
            elif kind == "coord_lease_cut":
                # Past the lease and the standby's poll: it must take over.
                dur = self.rng.uniform(LEASE_MS / 1000.0 + 1.5, LEASE_MS / 1000.0 + 4.0)
            elif kind.split("_")[0] in ("worker", "coord") and what in ("stop", "cut"):
                # Shorter or longer than the coordinator's liveness window.
                short = kind.endswith("short") or kind == "coord_cut" and self.rng.random() < 0.5
                dur = self.rng.uniform(0.2, 0.6 * window) if short else self.rng.uniform(window + 0.5, window + 4.0)
            elif what == "link":
                dur = self.rng.uniform(0.3, window + 3.0)
            elif what == "cut":
                dur = self.rng.uniform(0.5, 6.0)
            elif kind.endswith("short"):
                dur = self.rng.uniform(0.2, 1.0)
            else:
                dur = self.rng.uniform(2.0, 6.0)
            rid = "f%d" % len(self.faults)
            if what == "stop":
                proc.signal(signal.SIGSTOP)
                proc.state = "stopped"
                desc = "SIGSTOP for %.1fs" % dur
            elif what == "link":
                NET.link(proc.host, False)
                desc = "link down for %.1fs" % dur
            elif kind in ("coord_cut", "coord_lease_cut"):
                NET.cut(proc.host, rid, peers=["redis"])
                desc = "cut off from redis for %.1fs" % dur
            else:
                NET.cut(proc.host, rid)
                desc = "cut off from every host for %.1fs" % dur

            def heal(p=proc, what=what, rid=rid):
                if what == "stop":
                    p.signal(signal.SIGCONT)
                    p.state = "up"
                elif what == "link":
                    NET.link(p.host, True)
                else:
                    NET.remove(p.host, rid)
                p.busy = False
                self.ended(fault)
            self.at(now + dur, heal)
            self.active.append(fault)
        self.faults.append(fault)
        self.log("fault %d: %s %s%s" % (len(self.faults), proc.name, desc,
                                        " (mid-PPO)" if fault.get("mid_ppo") else ""))

    def inject_loss(self, dur):
        now = time.monotonic()
        fault = {"kind": "loss", "target": "every host", "t": now, "back": None, "wid": None,
                 "wall": time.time() * 1000}
        for h in NET.hosts:
            NET.loss(h, "loss", 1)

        def heal():
            for h in NET.hosts:
                NET.remove(h, "loss")
            self.windows.append((fault["wall"], time.time() * 1000))
            self.ended(fault)
        self.at(now + dur, heal)
        self.active.append(fault)
        self.faults.append(fault)
        self.log("fault %d: 1%% packet loss on every link for %.0fs" % (len(self.faults), dur))

    def supervise(self, now):
        # A daemon that exits by itself is a finding: it is logged, counted
        # and restarted as a supervisor (systemd, Kubernetes) would.
        for p in self.procs:
            if p.state in ("up", "stopped") and p.p and p.p.poll() is not None:
                rc = p.p.returncode
                if p in self.coords and rc == 3:
                    # A leader that found its lease taken steps down (exit 3,
                    # docs/operators.md): expected after a failover.
                    self.stepdowns += 1
                    self.log("%s stepped down (its lease was taken); restarting it as a standby" % p.name)
                    p.state, p.busy = "down", True
                    self.restart_later(p, 0.5)
                    continue
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
            self.probe_done(now)
            time.sleep(0.05)

    def drive(self):
        secs = self.a.seconds
        start = time.monotonic()
        self.fault_start = start
        if self.a.scenario:
            self.plan_scenario(start)
        else:
            self.plan_faults(start + 3, secs - 3, max(10, int(round(secs / self.a.interval))))
        self.loop(start + secs)
        self.fault_end = time.monotonic()
        # The faults stop: what is down comes back, what is paused goes on,
        # what is cut off is joined again.
        self.events = [e for e in self.events if e[2].__name__ == "heal"]
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
        # Workers faulted last have REJOIN_S to be heard again.
        while self.watch and any(time.monotonic() < f["back"] + REJOIN_S for f in self.watch):
            self.loop(time.monotonic() + 0.5, load=False)
        self.probe_next = float("inf")
        if self.probe:
            self.probe[0].wait()
        self.probe_done(time.monotonic())

    def all_listed(self):
        if not self.redis_up():
            return False
        try:
            return all(s(i) in self.runs for i in self.rd.call("ZRANGE", "sf:runs", "0", "-1"))
        except (OSError, RedisError):
            return False

    # ---- checks ---------------------------------------------------------------------------

    def problem(self, msg):
        self.problems.append(msg)

    def read_ledger(self):
        """Every worker's ledger: (run, job) -> [(attempt, worker, epoch, hash)]."""
        led, bad = {}, 0
        for name in sorted(os.listdir(self.ledger_dir)):
            with open(os.path.join(self.ledger_dir, name), "rb") as f:
                for raw in f:
                    parts = raw.decode("ascii", "replace").split()
                    if not raw.endswith(b"\n") or len(parts) != 6 or not parts[1].isdigit():
                        bad += 1
                        continue
                    run, job, att, wid, epoch, h = parts
                    led.setdefault((run, int(job)), []).append((int(att), wid, int(epoch), h))
        self.ledger_lines = sum(len(v) for v in led.values())
        if bad:
            self.problem("%d malformed ledger lines" % bad)
        return led

    def check(self):
        # Every fault is over: a patient connection for the last reads.
        self.rd.close()
        rd = self.rd = Redis(self.sock, timeout=10.0)
        self.jobs = self.lost = self.dup = self.dead = self.skipped = self.unmatched = 0
        self.exact = self.by_hash = self.reruns = 0
        self.accepted = {}  # (run, job) -> (attempt, worker, epoch) of the stamped result applied
        led = self.read_ledger()
        ids = [s(x) for x in rd.call("ZRANGE", "sf:runs", "0", "-1")]
        for rid in self.runs:
            if rid not in ids and self.runs[rid]["kind"] != "unconfirmed":
                r = self.runs[rid]
                self.problem("accepted run %s is not in sf:runs" % rid)
                self.lost += r["total"] or 1
        unknown = {run for run, _ in led if run not in ids}
        if unknown:
            # The coordinator dispatches a run's jobs before the batch that
            # saves it is acknowledged (and answers the submit only after):
            # killed in between, it leaves work of a run nobody was told of.
            self.notes.append("%d ledger lines of %d runs Redis never listed (%s): work of runs whose coordinator "
                              "was killed before they were saved; their submits were not answered" %
                              (sum(len(v) for k, v in led.items() if k[0] in unknown), len(unknown),
                               " ".join(sorted(unknown))))
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
            rep = rd.call("HGETALL", "sf:run:%s:results" % rid)
            results = {int(rep[i]): rep[i + 1] for i in range(0, len(rep) - 1, 2)}
            if set(results) - done:
                self.problem("run %s: %d results of jobs not done" % (rid, len(set(results) - done)))
                self.dup += len(set(results) - done)
            self.check_ledger(rid, done - beyond, results, led)
            classes = hash_of(rd.call("HGETALL", "sf:run:%s:classes" % rid))
            class_done = sum(int(v) for k, v in classes.items() if k.endswith(":done"))
            if not shift:
                if class_done != len(done):
                    self.problem("run %s: per-class done sum %d, done bits %d" % (rid, class_done, len(done)))
                    self.dup += max(0, class_done - len(done))
            else:
                self.check_shift(rid, spec, done, classes, class_done)
        self.check_faults(led)

    def check_ledger(self, rid, done, results, led):
        """Exactly one accepted effect per done job: its result in Redis is one
        execution that a worker's ledger records."""
        for i in sorted(done):
            lines = led.get((rid, i), [])
            self.reruns += max(0, len(lines) - 1)
            payload = results.get(i)
            if payload is None:
                # Under a ledger every OK result has a payload (ledger.h).
                self.problem("run %s job %d: done, but Redis has no result" % (rid, i))
                self.lost += 1
                continue
            h = fnv1a(payload)
            if self.seen.get((rid, i), h) != h or (rid, i) in self.changed:
                self.problem("run %s job %d: its result changed after the drill had read it (applied twice)" %
                             (rid, i))
                self.dup += 1
            try:
                o = json.loads(payload)
            except ValueError:
                o = None
            if isinstance(o, dict) and set(o) == {"attempt", "worker", "epoch"}:
                key = (o["attempt"], o["worker"], o["epoch"])
                match = [ln for ln in lines if ln[:3] == key]
                if len(match) > 1:
                    self.problem("run %s job %d: the execution %s is in the ledger %d times" %
                                 (rid, i, key, len(match)))
                    self.dup += len(match) - 1
                if not match or match[0][3] != h:
                    self.problem("run %s job %d: its result (attempt %s, worker %s, epoch %s) matches no ledger "
                                 "line (%d lines for the job)" % (rid, i, key[0], key[1], key[2], len(lines)))
                    self.unmatched += 1
                else:
                    self.exact += 1
                    self.accepted[(rid, i)] = key
            elif any(ln[3] == h for ln in lines):
                self.by_hash += 1
            else:
                self.problem("run %s job %d: its result is none a worker sent (%d ledger lines for the job)" %
                             (rid, i, len(lines)))
                self.unmatched += 1

    def check_faults(self, led):
        """What each worker fault must leave: the worker heard again, and its
        late results, for jobs given to others meanwhile, not applied; in the
        scenario, each fault what its kind promises."""
        for f in self.faults:
            if self.a.scenario:
                self.check_scripted(f, led)
            if f["kind"] not in WORKER_WATCH:
                continue
            if f.get("rejoin") is None:
                self.problem("%s was not heard again within %d s of its fault (%s at %.1fs)" %
                             (f["target"], REJOIN_S, LABEL[f["kind"]], f["t"] - self.t0))
            f["elsewhere"] = f["late"] = 0
            for rid, i, att in f.get("held", []):
                acc = self.accepted.get((rid, i))
                if acc is None or acc[:2] == (att, f["wid"]):
                    continue
                f["elsewhere"] += 1
                # The faulted worker finished the job too, and said so in its
                # ledger; the coordinator applied another execution.
                if any(ln[0] == att and ln[1] == f["wid"] for ln in led.get((rid, i), [])):
                    f["late"] += 1
            self.check_held(f)

    def check_scripted(self, f, led):
        k, what = f["kind"], "%s (%s)" % (LABEL[f["kind"]], f["target"])
        if k == "learner_cut" and not f.get("mid_ppo"):
            self.problem("%s: no PPO phase was running" % what)
        if k == "coord_cut" and not f.get("probes"):
            self.problem("%s: the coordinator's status was never compared with Redis meanwhile" % what)
        if k == "worker_cut_long" and not f.get("dead_seen"):
            self.problem("%s: the coordinator never gave the worker up" % what)

    def check_held(self, f):
        # After check_faults counted them: a worker cut off for longer than
        # its liveness had jobs; others' executions were applied, and the
        # ones it finished meanwhile (its ledger says so) were not.
        if self.a.scenario and f["kind"] == "worker_cut_long":
            what = "%s (%s)" % (LABEL[f["kind"]], f["target"])
            if not f.get("held"):
                self.problem("%s: it held no job when cut off, so nothing was shown" % what)
            elif not f["elsewhere"] or not f["late"]:
                self.problem("%s: of %d jobs it held, %d were applied from another execution and %d finished late "
                             "there; want both above 0" % (what, len(f["held"]), f["elsewhere"], f["late"]))

    def check_shift(self, rid, spec, done, classes, class_done):
        st = self.sfctl(["status", rid, "--json"], 5000)
        if st is None:
            self.problem("run %s: sfctl status failed" % rid)
            return
        first, single = 0, set()
        for ph in json.loads(st)["phases"]:
            if ph["name"] in SINGLE_PHASES:
                single |= set(range(first, first + ph["total"]))
            first += ph["total"]
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

    def whole_runs_under_loss(self):
        """Runs submitted and finished inside a loss window (Redis's times)."""
        n = 0
        for rid, r in self.runs.items():
            try:
                c, f = self.rd.pipeline([("HMGET", "sf:run:" + rid, "created_ms", "finished_ms")])[0]
            except OSError:
                continue
            if c and f and any(a <= int(c) and int(f) <= b for a, b in self.windows) and r["final"] == "done":
                n += 1
        return n

    # ---- report ----------------------------------------------------------------------------

    def recovery(self):
        """Per fault: how long its target was down, paused or cut off, and the
        seconds from the fault until the jobs done in Redis grew again once
        it was back (growth before that can be writes already in flight)."""
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
        n = 0
        for log in (name, name + "-b") if name == "coordinator" else (name,):
            try:
                with open(os.path.join(self.dir, log + ".log"), errors="replace") as f:
                    n += sum(text in line for line in f)
            except OSError:
                pass
        return n

    def leader(self):
        """The coordinator that holds the lease (its pid is in the holder)."""
        try:
            v = s(self.rd.call("GET", "sf:coordinator:leader")) or ""
        except Exception:
            return None
        parts = v.split(" ", 1)[-1].split(":")
        pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else -1
        return next((c for c in self.coords if c.p and c.p.pid == pid and c.state == "up"), None)

    def report(self):
        rec = self.recovery()
        fmt = lambda v: ("%.1f s" % v) if v is not None else "-"  # noqa: E731
        med = lambda v: statistics.median(v) if v else None  # noqa: E731
        print()
        print("Fault injection: seed %d, %d s of faults, %d workers, redis appendfsync %s, %s" %
              (self.a.seed, round(self.fault_end - self.fault_start), len(self.workers), self.a.appendfsync,
               "hosts in network namespaces over TCP" if self.net else "one host (unix socket, ipc)"))
        print()
        print("| fault | injected | down, paused or cut off (median) | recovery median | recovery max | notes |")
        print("|---|---:|---:|---:|---:|---|")
        alld, allr = [], []
        for k, _, _, _ in FAULTS:
            if k not in rec:
                continue
            d = [x for x, _ in rec[k]]
            r = [x for _, x in rec[k] if x is not None]
            alld, allr = alld + d, allr + r
            fs = [f for f in self.faults if f["kind"] == k]
            notes = []
            if k.startswith("learner"):
                notes.append("%d mid-PPO" % sum(1 for f in fs if f.get("mid_ppo")))
            if k in WORKER_WATCH:
                j = [f["rejoin"] for f in fs if f.get("rejoin") is not None]
                notes.append("rejoined %d/%d (median %s after)" % (len(j), len(fs), fmt(med(j))))
                notes.append("held %d jobs: %d applied from a later execution, %d finished late here, not applied" %
                             tuple(sum(f.get(x, 0) if x != "held" else len(f.get("held", [])) for f in fs)
                                   for x in ("held", "elsewhere", "late")))
                if k != "worker_kill":
                    notes.append("seen dead %d/%d" % (sum(1 for f in fs if f.get("dead_seen")), len(fs)))
            if k == "loss":
                notes.append("%d runs started and finished inside" % self.under_loss)
            print("| %s | %d | %s | %s | %s | %s |" % (LABEL[k], len(rec[k]), fmt(med(d)), fmt(med(r)),
                                                        fmt(max(r) if r else None), "; ".join(notes)))
        print("| **all** | **%d** (%d kinds) | %s | %s | %s | |" %
              (len(self.faults), len(rec), fmt(med(alld)), fmt(med(allr)), fmt(max(allr) if allr else None)))
        print()
        print("| runs | jobs | lost | duplicated | unmatched | dead | skipped | unanswered submits | drain |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("| %d sleep + %d shift | %d | %d | %d | %d | %d | %d | %d | %.0f s |" %
              (self.nsleep, self.nshift, self.jobs, self.lost, self.dup, self.unmatched, self.dead, self.skipped,
               self.unconfirmed, self.drained - self.fault_end))
        print()
        print("ledger: %d lines from %d workers; accepted results matched to one execution: %d by (attempt, worker, "
              "epoch), %d by payload hash; %d executions not applied (run again after a fault; at-least-once)" %
              (self.ledger_lines, len(self.workers), self.exact, self.by_hash, self.reruns))
        print("results read while their runs ran: %d, changed afterwards: %d" % (len(self.seen), len(self.changed)))
        print("coordinator's status against Redis: %d probes (%d while it could not reach Redis), %d reported a job "
              "done that Redis lacked" % (self.probes["n"], self.probes["redis_away"], self.probes["bad"]))
        exits = ["%s %s" % (p.name, p.exits) for p in self.procs if p.exits]
        print("leader lease: %d coordinators took it (epochs), %d leaders stepped down when they found it taken" %
              (self.logcount("coordinator", "leader: epoch"), self.stepdowns))
        print("coordinator: %d starts, %d resyncs after a Redis reconnect, %d batches refused by Redis and sent "
              "again, %d rollout windows reopened; learner: %d resumes from checkpoint; daemons that exited by "
              "themselves: %s" %
              (sum(c.starts for c in self.coords), self.logcount("coordinator", "rewriting the state"),
               self.logcount("coordinator", "a batch was refused") + self.logcount("coordinator", "a batch failed"),
               self.logcount("coordinator", "the learner has waited"),
               self.logcount("learner", "resumed from checkpoint"), ", ".join(exits) or "none"))
        print("Legend: jobs = jobs of every run Redis lists, skipped rollout jobs left out (a PPO phase ends when "
              "the learner is done); lost = accepted but never done (no done bit, or done without a result); "
              "duplicated = applied twice (a done counter above the done bits, a bit past the run's jobs, a result "
              "of a job not done, one execution twice in the ledger, a duplicate manifest id, images counted twice); "
              "unmatched = an accepted result that no worker's ledger records.  A job may run twice (at-least-once "
              "execution, e.g. after a worker SIGKILL); only one execution may take effect.  Recovery = from the "
              "fault until the jobs done in Redis grow again after the target is back (restarted, continued or "
              "joined again).  Held = jobs Redis had leased to the worker when the fault began.")
        if len(self.faults) < self.a.min_faults:
            self.problem("only %d faults injected, want %d" % (len(self.faults), self.a.min_faults))
        if not self.a.short and self.a.seconds >= 300:
            if len(rec) < 8:
                self.problem("only %d kinds of fault injected, want 8" % len(rec))
            missing = [LABEL[k] for k in REQUIRED if self.net and k not in rec]
            if missing:
                self.problem("never injected: " + ", ".join(missing))
        if self.windows and not self.under_loss:
            self.problem("no run started and finished inside a packet-loss window")
        if not self.probes["n"]:
            self.problem("the coordinator's status was never compared with Redis")
        for n in self.notes:
            print("NOTE: " + n)
        for p in self.problems:
            print("PROBLEM: " + p)
        return not self.problems and self.lost == 0 and self.dup == 0 and self.unmatched == 0

    def verdict(self, ok):
        if not ok:
            self.tails()
            for p in self.problems:
                print("PROBLEM: " + p)
        print("faults: %s (%d faults of %d kinds; %d jobs, %d lost, %d duplicated, %d unmatched, judged against the "
              "ledger)" % ("PASS" if ok else "FAIL", len(self.faults), len({f["kind"] for f in self.faults}),
                           self.jobs, self.lost, self.dup, self.unmatched))

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
    ap.add_argument("--interval", type=float, default=None,
                    help="mean seconds between faults (default 3.6; 3.0 with --short)")
    ap.add_argument("--workers", type=int, default=4, help="sf-worker processes (default 4; 3 with --short)")
    ap.add_argument("--short", action="store_true", help="the make-test version: 60 s, 3 workers")
    ap.add_argument("--scenario", action="store_true",
                    help="each network fault once at set times, each checked (tests/integration/test_netfaults.sh)")
    ap.add_argument("--drain", type=int, default=None, help="seconds to wait for runs after the faults")
    ap.add_argument("--bin", default=os.environ.get("SF_BIN", os.path.join(ROOT, "build", "bin")))
    ap.add_argument("--models", help="the tiny world models (default: BIN/../test-models, trained if missing)")
    ap.add_argument("--appendfsync", default="always", choices=("always", "everysec"),
                    help="Redis's fsync policy (default always, the shipped setting)")
    ap.add_argument("--local", action="store_true",
                    help="every daemon on this host over a unix socket and ipc: process faults only")
    ap.add_argument("--no-method", action="store_true", help="sleep runs only (no learner)")
    ap.add_argument("--keep", action="store_true", default=bool(os.environ.get("SF_KEEP")),
                    help="keep the private folder (logs, AOF, ledger, data)")
    ap.add_argument("--min-faults", type=int, help="fail with fewer (default 10 with --short, 80 for 300 s)")
    ap.add_argument("--quiet", action="store_true", help="only the table")
    a = ap.parse_args()
    if a.scenario:
        a.seconds, a.short, a.local = SCENARIO_S, True, False
    if a.short:
        a.seconds = min(a.seconds, 60)
        if "--workers" not in sys.argv:
            a.workers = 3
    if a.interval is None:
        a.interval = 3.0 if a.short else 3.6
    if a.min_faults is None:
        a.min_faults = 10 if a.short else 80 if a.seconds >= 300 else 1
    if a.drain is None:
        a.drain = 150 if a.short else 300
    a.net = not a.local
    if a.net:
        why = faultnet.unavailable()
        if why:
            print("faults: %s: cannot put the hosts in network namespaces (--local runs the process faults "
                  "alone)" % why)
            sys.exit(77)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    d = Drill(a)
    ok = False
    try:
        d.setup()
        d.drive()
        d.check()
        d.under_loss = d.whole_runs_under_loss()
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
