"""faultnet.py: hosts in network namespaces for the fault drill (tools/faults.py).

One namespace per host (Redis, the coordinator, the learner, each worker, and
"ctl" where sfctl runs), each with one veth, eth0, whose peer is a port of a
bridge in a hub namespace; addresses 10.99.0.0/24, assigned here.  Nothing is
routed out of the hub, so the hosts reach each other and their own loopback
and nothing else.  Faults are nftables rules inside a host's namespace (a
drop rule is a partition, `numgen random mod 100 < N` is packet loss) and
link down/up of its eth0.

Names carry the drill's pid (sfdrill<pid>-<host>), so parallel drills never
share one, and namespaces left by a drill that was SIGKILLed (its pid gone)
are removed by the next.  destroy() removes this drill's namespaces; it is
idempotent and the drill calls it on every exit path.

Standard library only; needs root, iproute2 (ip) and nftables (nft).
"""
import ctypes
import os
import re
import shutil
import subprocess

CLONE_NEWNET = 0x40000000
PREFIX = "sfdrill"
SUBNET = "10.99.0"
_libc = ctypes.CDLL(None, use_errno=True)


def _run(argv, check=True, input=None):
    r = subprocess.run(argv, capture_output=True, input=input)
    if check and r.returncode != 0:
        raise OSError("%s: %s" % (" ".join(argv), (r.stderr or r.stdout).decode(errors="replace").strip()))
    return r


def unavailable():
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return "no %s (iproute2 / nftables)" % tool
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    r = _run(["ip", "netns", "add", probe], check=False)
    if r.returncode != 0:
        return "cannot make a network namespace: " + r.stderr.decode(errors="replace").strip()
    try:
        r = _run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"], check=False)
        if r.returncode != 0:
            return "nftables does not work in a namespace: " + r.stderr.decode(errors="replace").strip()
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def sweep_stale():
    """Removes namespaces of drills that are gone (their pid no longer runs)."""
    r = _run(["ip", "netns", "list"], check=False)
    for line in r.stdout.decode(errors="replace").splitlines():
        m = re.match(r"(%s(\d+)-\S+)" % PREFIX, line)
        if m and not os.path.exists("/proc/" + m.group(2)):
            _run(["ip", "netns", "del", m.group(1)], check=False)


class Net:
    """The drill's hosts.  hosts: name -> last byte of its address."""

    def __init__(self, hosts):
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.hub = self.tag + "-hub"
        self.hosts = dict(hosts)
        self.made = []
        self.rules = {h: {} for h in self.hosts}  # host -> {rule id: nft statement lines}
        self.down = set()

    def ns(self, host):
        return "%s-%s" % (self.tag, host)

    def ip(self, host):
        return "%s.%d" % (SUBNET, self.hosts[host])

    def create(self):
        sweep_stale()
        self._add_ns(self.hub)
        _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        for i, h in enumerate(self.hosts):
            ns = self.ns(h)
            self._add_ns(ns)
            port = "p%d" % i
            # Made inside the two namespaces: no name is ever seen in the
            # host's own namespace, so nothing there can collide.
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.hub])
            _run(["ip", "-n", self.hub, "link", "set", port, "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", self.ip(h) + "/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            self.apply(h)

    def _add_ns(self, ns):
        _run(["ip", "netns", "add", ns])
        self.made.append(ns)

    def destroy(self):
        """Removes every namespace this drill made (their veths go with them).
        Processes still inside keep theirs alive until they exit: stop them
        first."""
        for ns in reversed(self.made):
            _run(["ip", "netns", "del", ns], check=False)
        self.made = []

    def enter(self, host):
        """A preexec_fn step: moves the calling (child) process into host's
        namespace."""
        path = "/run/netns/" + self.ns(host)
        fd = os.open(path, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns %s: %s" % (path, os.strerror(e)))
        finally:
            os.close(fd)

    def exec_argv(self, host, argv):
        return ["ip", "netns", "exec", self.ns(host)] + list(argv)

    # ---- faults ------------------------------------------------------------

    def apply(self, host):
        """Writes host's ruleset: one table, its input and output chains, the
        rules now in force (a whole replacement, so it is always exact)."""
        inp = [l for r in self.rules[host].values() for d, l in r if d == "in"]
        out = [l for r in self.rules[host].values() for d, l in r if d == "out"]
        text = ("flush ruleset\ntable inet sfdrill {\n"
                " chain in { type filter hook input priority 0; policy accept;\n%s }\n"
                " chain out { type filter hook output priority 0; policy accept;\n%s }\n}\n" %
                ("".join("  %s\n" % l for l in inp), "".join("  %s\n" % l for l in out)))
        _run(self.exec_argv(host, ["nft", "-f", "-"]), input=text.encode())

    def add(self, host, rid, rules):
        self.rules[host][rid] = rules
        self.apply(host)

    def remove(self, host, rid):
        if self.rules[host].pop(rid, None) is not None:
            self.apply(host)

    def cut(self, host, rid, peers=None):
        """A partition: host hears and reaches nobody (peers None) or not the
        given hosts; loopback stays."""
        if peers is None:
            rules = [("in", 'iifname "eth0" drop'), ("out", 'oifname "eth0" drop')]
        else:
            rules = []
            for p in peers:
                rules += [("in", "ip saddr %s drop" % self.ip(p)), ("out", "ip daddr %s drop" % self.ip(p))]
        self.add(host, rid, rules)

    def loss(self, host, rid, percent):
        """Drops percent % of the packets host sends (so each direction of
        each link loses that share, at its sender)."""
        self.add(host, rid, [("out", 'oifname "eth0" numgen random mod 100 < %d drop' % percent)])

    def link(self, host, up):
        _run(["ip", "-n", self.ns(host), "link", "set", "eth0", "up" if up else "down"])
        (self.down.discard if up else self.down.add)(host)
