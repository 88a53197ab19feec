"""Far nodes as hosts of their own: network namespaces joined to this one by veth pairs.

Partition tests (issue 12) need a far node that keeps running while the
network between it and the cache is cut. `FarHost` makes such a host:

    this namespace (the test, kvcache)            namespace kvtest-PID-N
    kvhPIDxN  10.231.a.b+1/30  <==== veth ====>  kvpPIDxN  10.231.a.b+2/30
                                                  lo up
    unreachable 10.231.a.b/30 metric 4231         farserver -l 10.231.a.b+2 -p 0

- Names carry the test process's PID and a per-process counter (interface
  names stay within Linux's 15 characters), so parallel runs and the
  leftovers of a killed run never collide. The first FarHost of a process
  deletes the leftovers of dead PIDs (`cleanup_leftovers`; one whose PID was
  reused meanwhile waits for a later run).
- Each host gets its own /30 of 10.231.0.0/16 (16,384 of them): the first one
  from (PID * 64 + N) on that is neither on an interface nor routed here.
  Creating, closing and cleaning up hold one lock file, so two processes
  never pick the same /30 and a /30 routed but on no interface is a leftover.
- An `unreachable` route for the /30 (metric 4231) stands behind the link's
  own route: while the link is down, packets for the host fail here with
  "No route to host" instead of taking the default route off the machine.
- `cut()` sets the host-side veth down: the connected route goes, an open
  TCP connection to the node stays open but nothing crosses it (the kernel
  keeps retransmitting), new connections fail at once. `heal()` sets it up:
  the route is back and TCP's next retransmission gets through (kvcache saw
  its node answer again 0.2 s after a 3 s cut, 0.9 s after a 25 s one).
- `start_farserver()` runs `ip netns exec NAME python -m farserver -l ADDR
  -p 0 --parent-fd N` (ip execs in place: the PID is farserver's) and reads
  the port from its startup line; the lifeline pipe stops the node if the
  test process dies. `close()` stops it by PID (SIGTERM, SIGKILL after 10 s)
  and deletes the route, the veth pair and the namespace.
- Only root with a working `ip netns` can do this: `unavailable()` says why
  not, and the `far_host`/`far_hosts` fixtures skip with that reason.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest

__all__ = [
    "FarHost",
    "NetnsFarNode",
    "cleanup_leftovers",
    "far_host",
    "far_hosts",
    "unavailable",
]

PREFIX = "kvtest"  # namespace names: kvtest-PID-N
HOST_IF = "kvh{pid}x{n}"  # the veth end in this namespace
PEER_IF = "kvp{pid}x{n}"  # the veth end in the host's namespace
POOL = ipaddress.ip_network("10.231.0.0/16")  # one /30 per host
SUBNETS = POOL.num_addresses // 4  # 16,384 /30s
ROUTE_METRIC = 4231  # the unreachable route behind each host's link route
LOCK = os.path.join(tempfile.gettempdir(), "kvcache-netns.lock")
IP_TIMEOUT = 10.0  # seconds any one `ip` command may take
_NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+|probe)$")  # what cleanup_leftovers owns

_counter = 0  # hosts made by this process
_counter_lock = threading.Lock()
_cleaned = False  # cleanup_leftovers() has run in this process
_unavailable: str | None = None  # unavailable()'s answer, once known
_checked = False


def ip(command: str, check: bool = True) -> str:
    """Run `ip COMMAND` (words split on spaces); its stdout.

    RuntimeError with its stderr when it fails and `check`.
    """
    argv = ["ip", *command.split()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {command}: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the harness's lock file (every process using it, one at a time)."""
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`, `ip netns` fails), or None."""
    global _checked, _unavailable
    if _checked:
        return _unavailable
    _checked = True
    if not sys.platform.startswith("linux"):
        _unavailable = "network namespaces need Linux"
    elif os.geteuid() != 0:
        _unavailable = "network namespaces need root (CI runs as root)"
    elif shutil.which("ip") is None:
        _unavailable = "`ip` (iproute2) is not installed"
    else:
        probe = f"{PREFIX}-{os.getpid()}-probe"
        try:
            ip(f"netns add {probe}")
            ip(f"netns del {probe}")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            _unavailable = f"`ip netns` does not work here: {exc}"
    return _unavailable


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    """Every named network namespace (`ip netns list`)."""
    return [line.split()[0] for line in ip("netns list").splitlines() if line.strip()]


def _interface_subnets() -> set[ipaddress.IPv4Network]:
    """The /30s of the pool on an interface of this namespace."""
    out = set()
    for line in ip("-4 -o addr show").splitlines():
        m = re.search(r"\binet (\S+)", line)
        if m:
            net = ipaddress.ip_interface(m.group(1)).network
            if net.prefixlen == 30 and net.subnet_of(POOL):
                out.add(net)
    return out


def _routed_subnets() -> set[ipaddress.IPv4Network]:
    """The /30s of the pool with the harness's unreachable route."""
    out = set()
    for line in ip("-4 route show").splitlines():
        words = line.split()
        if words[:1] == ["unreachable"] and words[-2:] == ["metric", str(ROUTE_METRIC)]:
            net = ipaddress.ip_network(words[1], strict=False)
            if net.subnet_of(POOL):
                out.add(net)
    return out


def cleanup_leftovers() -> list[str]:
    """Delete the namespaces, veths and routes left by harness runs whose PID is dead.

    A leftover's processes (farservers whose lifeline somehow failed) are
    killed by PID first, or the namespace would outlive its name. Returns the
    namespaces deleted.
    """
    deleted = []
    with _locked():
        for name in _namespaces():
            m = _NAME.match(name)
            if not m or _pid_alive(int(m.group(1))):
                continue
            for pid in ip(f"netns pids {name}", check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            host_if = HOST_IF.format(pid=m.group(1), n=m.group(2))
            ip(f"link del {host_if}", check=False)
            ip(f"netns del {name}", check=False)
            deleted.append(name)
        for net in _routed_subnets() - _interface_subnets():  # on no interface: a leftover
            ip(f"route del unreachable {net} metric {ROUTE_METRIC}", check=False)
    return deleted


class NetnsFarNode:
    """A farserver running inside a FarHost's namespace; stopped by PID."""

    def __init__(self, netns: str, host: str, *args: str, timeout: float = 15.0):
        self.host = host  # the address it listens on (the peer end of the veth)
        self.port = 0  # learnt from its startup line
        self.lines: collections.deque[bytes] = collections.deque(maxlen=200)  # its stderr
        ready = re.compile(rb"^farserver listening on " + re.escape(host.encode()) + rb":(\d+)$")
        rfd, self._lifeline = os.pipe()  # it stops when our end closes (we died)
        cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "farserver"]
        cmd += ["-l", host, "-p", "0", "--parent-fd", str(rfd), *args]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(rfd,),
                start_new_session=True,  # a terminal's Ctrl-C is for the test only
            )
        except BaseException:
            os.close(self._lifeline)
            raise
        finally:
            os.close(rfd)
        started = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.rstrip(b"\n")
                self.lines.append(line)
                m = ready.match(line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    started.set()
            self.proc.wait()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        if not started.wait(timeout) or not self.port:
            self.stop()
            tail = b"\n".join(list(self.lines)[-5:]).decode(errors="replace")
            raise RuntimeError(f"farserver in {netns} did not start: {tail}")

    @property
    def pid(self) -> int:
        """The farserver's PID (`ip netns exec` execs it in place)."""
        return self.proc.pid

    @property
    def address(self) -> str:
        """HOST:PORT, as kvcache's --far takes it."""
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        """True while it runs."""
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `grace` seconds; the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        return self.proc.returncode


class FarHost:
    """A network namespace joined to this one by a veth pair, to run far nodes in."""

    def __init__(self) -> None:
        global _cleaned, _counter
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        if not _cleaned:
            _cleaned = True
            cleanup_leftovers()
        with _counter_lock:
            n = _counter
            _counter += 1
        pid = os.getpid()
        self.name = f"{PREFIX}-{pid}-{n}"  # the namespace
        self.host_if = HOST_IF.format(pid=pid, n=n)  # its veth end here
        self.peer_if = PEER_IF.format(pid=pid, n=n)  # its veth end in the namespace
        self.nodes: list[NetnsFarNode] = []
        self.is_cut = False
        self._made = False
        with _locked():
            used = _interface_subnets() | _routed_subnets()
            for k in range(SUBNETS):
                i = (pid * 64 + n + k) % SUBNETS
                net = ipaddress.ip_network(f"{POOL[i * 4]}/30")
                if net not in used:
                    break
            else:
                raise RuntimeError(f"no free /30 left in {POOL}")
            self.subnet = net
            self.local = str(net[1])  # this side's address
            self.address = str(net[2])  # the host's address: far nodes listen on it
            try:
                self._make()
            except BaseException:
                self._unmake()
                raise
        self._made = True

    def _make(self) -> None:
        ip(f"netns add {self.name}")
        ip(f"link add {self.host_if} type veth peer name {self.peer_if} netns {self.name}")
        ip(f"addr add {self.local}/30 dev {self.host_if}")
        ip(f"-n {self.name} addr add {self.address}/30 dev {self.peer_if}")
        ip(f"-n {self.name} link set lo up")
        ip(f"-n {self.name} link set {self.peer_if} up")
        ip(f"link set {self.host_if} up")
        ip(f"route replace unreachable {self.subnet} metric {ROUTE_METRIC}")

    def _unmake(self) -> None:
        ip(f"route del unreachable {self.subnet} metric {ROUTE_METRIC}", check=False)
        ip(f"link del {self.host_if}", check=False)  # its peer goes with it
        ip(f"netns del {self.name}", check=False)

    def start_farserver(self, *args: str, memory_mb: int = 64) -> NetnsFarNode:
        """A farserver on this host's address, port picked by it; extra farserver `args`."""
        node = NetnsFarNode(self.name, self.address, "-m", str(memory_mb), *args)
        self.nodes.append(node)
        return node

    def cut(self) -> None:
        """Cut the link (host-side veth down): nothing crosses until heal()."""
        ip(f"link set {self.host_if} down")
        self.is_cut = True

    def heal(self) -> None:
        """Restore the link (host-side veth up)."""
        ip(f"link set {self.host_if} up")
        self.is_cut = False

    def close(self) -> None:
        """Stop its far nodes by PID; delete the route, the veth pair and the namespace."""
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._made:
            self._made = False
            with _locked():
                self._unmake()

    def __enter__(self) -> FarHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def far_hosts() -> Iterator[Callable[[], FarHost]]:
    """Makes FarHosts on demand, all closed after the test; skips without root or `ip netns`."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    hosts: list[FarHost] = []

    def make() -> FarHost:
        hosts.append(FarHost())
        return hosts[-1]

    try:
        yield make
    finally:
        for host in reversed(hosts):
            host.close()


@pytest.fixture
def far_host(far_hosts: Callable[[], FarHost]) -> FarHost:
    """One far-node host in a network namespace of its own (see far_hosts)."""
    return far_hosts()
