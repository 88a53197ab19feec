"""The image and the compose file run for real: `make test-containers` (CI runs it).

Needs a Docker engine, docker-compose and the image `kvcache:local`, which
`make image` builds (offline: on a Debian base built from Debian's packages
when python:3.11-slim-bookworm cannot be pulled). Marked `containers`: plain
`make test` deselects these (they take minutes and an engine), `make
test-containers` builds the image and runs only them.

Every run is its own compose project (`kvt<pid>...`), publishes the cache on
an ephemeral 127.0.0.1 port and reads its secret from a temporary file; `down`
must leave no container, network or volume of the project behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oracle import free_port
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kvcache:local"
TWEMPROXY_IMAGE = "kvcache-twemproxy:local"
HEALTHY_WITHIN = 120.0  # seconds: start_period 10 s, then checks every 10 s; far first, then cache


def _compose_cmd() -> list[str]:
    """`docker compose` (v2) if the engine has it, else Debian's docker-compose (v1)."""
    if shutil.which("docker") is None:
        pytest.fail("no docker: the container tests need a Docker engine")
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if v2.returncode == 0:
        return ["docker", "compose"]
    for path in ("/usr/bin/docker-compose", "/usr/local/bin/docker-compose"):
        if os.access(path, os.X_OK):
            return [path]
    pytest.fail("neither `docker compose` nor /usr/bin/docker-compose is installed")


class Project:
    """One compose project of a compose file, brought up and torn down by the test."""

    def __init__(self, tmp: Path, files: tuple[str, ...] = ("docker-compose.yml",)):
        self.name = f"kvt{os.getpid()}x{random.randrange(1 << 20):05x}"
        self.port = free_port()
        self.node_ports = (free_port(), free_port())  # the cluster file's kvcache1, kvcache2
        secret = tmp / "far_secret"
        secret.write_text(os.urandom(16).hex() + "\n")
        secret.chmod(0o644)  # the containers' user (uid 10001) reads it
        certs = tmp / "certs"  # cache <-> far over mutual TLS, as the compose file has it
        subprocess.run(
            ["sh", str(ROOT / "docker" / "make-certs.sh"), str(certs)],
            check=True,
            capture_output=True,
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")},
            "KVCACHE_PORT": str(self.port),
            "KVCACHE_NODE1_PORT": str(self.node_ports[0]),
            "KVCACHE_NODE2_PORT": str(self.node_ports[1]),
            "KVCACHE_SECRET_FILE": str(secret),
            "KVCACHE_CERTS": str(certs),
        }
        self.certs = certs
        self.cmd = [*_compose_cmd(), "-p", self.name]
        for file in files:
            self.cmd += ["-f", str(ROOT / file)]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.cmd, *args], capture_output=True, timeout=timeout, env=self.env, cwd=ROOT
        )
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace")[-2000:])
        return done

    def up(self) -> None:
        """`up -d --no-build`; new host ports and again if Docker says one is taken.

        free_port() only shows that no socket is bound now: Docker may still
        hold the port for a container being removed (published ports need no
        listening socket without the userland proxy), or something may take
        it before compose binds it. Once in a full run: "Bind for
        127.0.0.1:45997 failed: port is already allocated".
        """
        for attempt in range(3):
            done = subprocess.run(
                [*self.cmd, "up", "-d", "--no-build"],
                capture_output=True,
                timeout=180,
                env=self.env,
                cwd=ROOT,
            )
            err = done.stderr.decode(errors="replace")
            if done.returncode == 0:
                return
            if "port is already allocated" not in err or attempt == 2:
                raise AssertionError(("up", err[-2000:]))
            self.run("down", "-v", "--remove-orphans")
            self.port = free_port()
            self.node_ports = (free_port(), free_port())
            self.env["KVCACHE_PORT"] = str(self.port)
            self.env["KVCACHE_NODE1_PORT"] = str(self.node_ports[0])
            self.env["KVCACHE_NODE2_PORT"] = str(self.node_ports[1])

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.decode().split()[0]

    def inspect(self, service: str) -> dict:
        out = subprocess.run(
            ["docker", "inspect", self.container(service)], capture_output=True, check=True
        )
        return json.loads(out.stdout)[0]

    def health(self, service: str) -> str:
        return self.inspect(service)["State"].get("Health", {}).get("Status", "none")

    def wait_healthy(self, *services: str, within: float = HEALTHY_WITHIN) -> float:
        t0 = time.monotonic()
        while True:
            states = {s: self.health(s) for s in services}
            if all(v == "healthy" for v in states.values()):
                return time.monotonic() - t0
            assert time.monotonic() - t0 < within, f"not healthy in {within} s: {states}"
            time.sleep(1)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.name}"
        out = {}
        for kind, cmd in (
            ("containers", ["docker", "ps", "-aq", "--filter", label]),
            ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
        ):
            out[kind] = subprocess.run(cmd, capture_output=True, check=True).stdout.split()
        return out


@contextlib.contextmanager
def _project(tmp: Path, *files: str, images: tuple[str, ...] = (IMAGE,)) -> Iterator[Project]:
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            pytest.fail(f"no image {image}: run `make image` (make test-containers does)")
    p = Project(tmp, files or ("docker-compose.yml",))
    try:
        yield p
    finally:
        subprocess.run(
            [*p.cmd, "down", "-v", "--remove-orphans", "-t", "5"],
            capture_output=True,
            timeout=180,
            env=p.env,
            cwd=ROOT,
        )


@pytest.fixture
def project(tmp_path):
    with _project(tmp_path) as p:
        yield p


@pytest.fixture
def replicated(tmp_path):
    with _project(tmp_path, "docker-compose.replicated.yml") as p:
        yield p


@pytest.fixture
def client_tls(tmp_path):
    with _project(tmp_path, "docker-compose.yml", "docker-compose.tls.yml") as p:
        yield p


@pytest.fixture
def cluster(tmp_path):
    with _project(tmp_path, "docker-compose.cluster.yml", images=(IMAGE, TWEMPROXY_IMAGE)) as p:
        yield p


def _client(port: int) -> Client:
    return Client(("127.0.0.1", port), timeout=10, connect_timeout=10)


def test_compose_up_serves_and_down_leaves_nothing(project):
    t0 = time.monotonic()
    project.up()
    project.wait_healthy("far", "cache")
    started = time.monotonic() - t0
    c = _client(project.port)
    values = {f"key{i}": os.urandom(1000) for i in range(2000)}
    for k, v in values.items():
        assert c.set(k, v)
    for k, v in values.items():
        assert c.get(k) == v
    settings = c.stats("settings")
    assert settings[b"compiled"] == b"yes"
    assert settings[b"far"] == b"far:11311"
    assert settings[b"far_tls"] == b"yes"
    assert int(c.stats()[b"far_available"]) == 1
    c.close()
    project.run("down", "-v", "-t", "10")
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    print(f"compose up to both healthy: {started:.1f} s")


def test_far_container_killed_under_load_never_a_wrong_value(project):
    project.up()
    project.wait_healthy("far", "cache")
    c = _client(project.port)
    n = 10_000  # 100 MB of values through a 64 MiB heap: the far node holds a third or more
    value = {i: (b"%06d" % i) * 1700 for i in range(n)}
    for start in range(0, n, 100):
        assert c.set_many({f"k{i}": value[i] for i in range(start, start + 100)}) == []
    assert int(c.stats()[b"far_writes"]) > n // 4
    c.close()
    stop = threading.Event()
    wrong: list[int] = []
    counts = {"hit": 0, "miss": 0, "error": 0}

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        cl = _client(project.port)
        while not stop.is_set():
            i = rnd.randrange(n)
            try:
                got = cl.get(f"k{i}")
            except Exception:  # a reply past the client timeout: counted, never a value
                counts["error"] += 1
                cl.close()
                cl = _client(project.port)
                continue
            if got is None:
                counts["miss"] += 1
            elif got != value[i]:
                wrong.append(i)
            else:
                counts["hit"] += 1
        cl.close()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    far = project.inspect("far")
    os.kill(far["State"]["Pid"], signal.SIGKILL)  # a crash, not `docker kill`: the policy applies
    time.sleep(3)
    restarted = project.wait_healthy("far")
    deadline = time.monotonic() + 60
    back = False
    while time.monotonic() < deadline and not back:
        cl = _client(project.port)
        back = int(cl.stats()[b"far_available"]) == 1
        cl.close()
        time.sleep(0.5)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    assert wrong == []
    assert counts["hit"] > 100 and counts["miss"] > 0, counts  # far copies died with the node
    assert back, "the cache did not reconnect to the restarted far node"
    assert project.inspect("far")["RestartCount"] >= 1
    cl = _client(project.port)
    assert cl.set("after", b"x") and cl.get("after") == b"x"
    cl.close()
    print(f"far node back healthy {restarted:.1f} s after its crash; reads {counts}")


def _value(tag: str, i: int, size: int) -> bytes:
    """A value that names its key: a wrong item read back cannot look right."""
    head = b"%s%08d:" % (tag.encode(), i)
    return (head * (size // len(head) + 1))[:size]


def test_replicated_far_tier_loses_nothing_when_a_far_node_is_killed(replicated):
    """Three far nodes, two replicas: one crashed under load, every key reads back."""
    p = replicated
    t0 = time.monotonic()
    p.up()
    p.wait_healthy("far1", "far2", "far3", "cache")
    started = time.monotonic() - t0
    c = _client(p.port)
    settings = c.stats("settings")
    assert settings[b"far"] == b"far1:11311,far2:11311,far3:11311"
    assert settings[b"far_tls"] == b"yes"
    far = c.stats("far")
    assert int(far[b"far_nodes_available"]) == 3 and int(far[b"far_replicas"]) == 2
    n, size = 10_000, 10_000  # 100 MB through a 64 MiB heap: most items go far
    for start in range(0, n, 100):
        batch = {f"k{i}": _value("k", i, size) for i in range(start, start + 100)}
        assert c.set_many(batch) == []
    stats = c.stats()
    assert int(stats[b"far_writes"]) > n // 4, stats
    c.close()

    stop = threading.Event()
    wrong: list[str] = []
    missed: list[str] = []
    errors: list[str] = []
    reads = [0]
    stored: list[int] = []  # the writer's keys w<j> answered STORED

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        cl = _client(p.port)
        while not stop.is_set():
            i = rnd.randrange(n)
            try:
                got = cl.get(f"k{i}")
            except Exception as e:  # a timeout or a dropped connection: counted, then fails
                errors.append(repr(e))
                cl.close()
                cl = _client(p.port)
                continue
            reads[0] += 1
            if got is None:
                missed.append(f"k{i}")
            elif got != _value("k", i, size):
                wrong.append(f"k{i}")
        cl.close()

    def writer() -> None:
        cl = _client(p.port)
        j = 0
        while not stop.is_set():
            try:
                if cl.set(f"w{j}", _value("w", j, size), noreply=False):
                    stored.append(j)
            except Exception as e:
                errors.append(repr(e))
                cl.close()
                cl = _client(p.port)
            j += 1
        cl.close()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    time.sleep(3)
    victim = p.inspect("far2")
    os.kill(victim["State"]["Pid"], signal.SIGKILL)  # a crash: the restart policy applies
    killed = time.monotonic()
    time.sleep(3)
    p.wait_healthy("far2")
    deadline = time.monotonic() + 60
    back = False
    while time.monotonic() < deadline and not back:
        cl = _client(p.port)
        back = int(cl.stats("far")[b"far_nodes_available"]) == 3
        cl.close()
        time.sleep(0.5)
    rejoined = time.monotonic() - killed
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(60)
    assert back, "the cache did not take the restarted far node back"
    assert p.inspect("far2")["RestartCount"] >= 1
    assert wrong == [] and missed == [] and errors == [], (wrong[:5], missed[:5], errors[:5])
    assert reads[0] > 100 and len(stored) > 10, (reads[0], len(stored))

    # Every key written, before the crash and during it, byte-exact.
    c = _client(p.port)
    keys = [f"k{i}" for i in range(n)] + [f"w{j}" for j in stored]
    for start in range(0, len(keys), 100):
        batch = keys[start : start + 100]
        got = c.get_many(batch)
        for k in batch:
            assert got.get(k) == _value(k[0], int(k[1:]), size), k
    far = c.stats("far")
    c.close()
    assert int(far[b"far_failovers"]) > 0, far  # reads did go to the second replica
    p.run("down", "-v", "-t", "10")
    assert p.leftovers() == {"containers": [], "networks": [], "volumes": []}
    print(
        f"replicated: up {started:.1f} s; far2 killed, back in the tier {rejoined:.1f} s later;"
        f" {reads[0]} reads and {len(stored)} sets under load, then {len(keys)} keys"
        f" byte-exact; far_failovers {int(far[b'far_failovers'])}"
    )


def _exchange(port: int, request: bytes, wait: float = 1.5) -> tuple[bytes, bool]:
    """What a fresh connection hears back for `request` within `wait` s, and whether it closed."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(0.2)
        s.sendall(request)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
    return out, False


def test_cluster_behind_twemproxy_spreads_keys_and_down_leaves_nothing(cluster):
    p = cluster
    t0 = time.monotonic()
    p.up()
    p.wait_healthy("far1", "far2", "kvcache1", "kvcache2", "twemproxy")
    started = time.monotonic() - t0
    proxy = _client(p.port)
    n = 4000
    values = {f"c{i}": _value("c", i, 300) for i in range(n)}
    for k, v in values.items():
        assert proxy.set(k, v, noreply=False)
    for k, v in values.items():
        assert proxy.get(k) == v, k
    keys = list(values)
    for start in range(0, n, 100):  # twemproxy splits a multi-get by node and merges the replies
        got = proxy.get_many(keys[start : start + 100])
        assert got == {k: values[k] for k in keys[start : start + 100]}
    assert proxy.delete("c0", noreply=False) and proxy.get("c0") is None
    _, cas = proxy.gets("c1")  # gets and cas go through, to the key's node
    assert proxy.cas("c1", b"new", cas) and not proxy.cas("c1", b"newer", cas)
    values["c1"] = b"new"
    assert proxy.version().startswith(b"1.6")  # forwarded to a node: kvcache's version line
    proxy.close()

    # What nutcracker 0.5.0 does not forward: it closes the connection without a reply
    # (README "Docker compose" lists these, as seen here).
    for request in (
        b"stats\r\n",
        b"stats settings\r\n",
        b"flush_all\r\n",
        b"verbosity 1\r\n",
        b"mg c2 v\r\n",
        b"ms c2 1\r\nz\r\n",
        b"md c2\r\n",
        b"ma c2\r\n",
        b"mn\r\n",
        b"me c2\r\n",
        b"gat 100 c2\r\n",
        b"gats 100 c2\r\n",
        b"no_such_command\r\n",  # kvcache says ERROR; twemproxy closes
        b"get " + b"k" * 251 + b"\r\n",  # kvcache says CLIENT_ERROR; twemproxy closes
    ):
        assert _exchange(p.port, request) == (b"", True), request
    assert _exchange(p.port, b"touch c2 100\r\n") == (b"TOUCHED\r\n", False)
    after = _client(p.port)  # a closed connection costs nothing else: the next one serves
    assert after.get("c2") == values["c2"]
    after.close()
    shares = []
    for port in p.node_ports:
        node = _client(port)
        shares.append(int(node.stats()[b"curr_items"]))
        node.close()
    assert sum(shares) == n - 1, shares  # each key on exactly one node
    assert all(s > n // 4 for s in shares), shares  # ketama: both nodes get a fair share

    # The client-side alternative (README): pymemcache hashes keys over the nodes itself.
    hashed = HashClient([("127.0.0.1", port) for port in p.node_ports], timeout=10)
    for i in range(500):
        assert hashed.set(f"h{i}", _value("h", i, 300), noreply=False)
    assert all(hashed.get(f"h{i}") == _value("h", i, 300) for i in range(500))
    hashed.close()
    gained = []
    for port, before in zip(p.node_ports, shares, strict=True):
        node = _client(port)
        gained.append(int(node.stats()[b"curr_items"]) - before)
        node.close()
    assert sum(gained) == 500 and min(gained) > 100, gained

    p.run("down", "-v", "-t", "10")
    assert p.leftovers() == {"containers": [], "networks": [], "volumes": []}
    print(f"cluster: up {started:.1f} s; {n} keys through twemproxy, node shares {shares}")


def test_client_tls_override_serves_tls_only(client_tls):
    p = client_tls
    t0 = time.monotonic()
    p.up()
    p.wait_healthy("far", "cache")  # the cache's healthcheck speaks TLS
    started = time.monotonic() - t0
    ctx = ssl.create_default_context(cafile=str(p.certs / "ca.crt"))
    c = Client(("127.0.0.1", p.port), timeout=10, connect_timeout=10, tls_context=ctx)
    values = {f"t{i}": _value("t", i, 1000) for i in range(500)}
    for k, v in values.items():
        assert c.set(k, v, noreply=False)
    assert c.get_many(list(values)) == values
    settings = c.stats("settings")
    assert settings[b"ssl_enabled"] == b"yes" and settings[b"far_tls"] == b"yes"
    c.close()
    # A plaintext client gets no reply; a client that does not trust the CA is refused.
    out, _ = _exchange(p.port, b"version\r\n")
    assert out == b""
    stranger = Client(("127.0.0.1", p.port), timeout=10, tls_context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.get("t1")
    p.run("down", "-v", "-t", "10")
    assert p.leftovers() == {"containers": [], "networks": [], "volumes": []}
    print(f"client TLS: up {started:.1f} s; 500 items over TLS; plaintext gets no reply")
