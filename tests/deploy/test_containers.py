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

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from oracle import free_port
from pymemcache.client.base import Client

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kvcache:local"
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
    """One compose project of docker-compose.yml, brought up and torn down by the test."""

    def __init__(self, tmp: Path):
        self.name = f"kvt{os.getpid()}x{random.randrange(1 << 20):05x}"
        self.port = free_port()
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
            "KVCACHE_SECRET_FILE": str(secret),
            "KVCACHE_CERTS": str(certs),
        }
        self.cmd = [*_compose_cmd(), "-p", self.name, "-f", str(ROOT / "docker-compose.yml")]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.cmd, *args], capture_output=True, timeout=timeout, env=self.env, cwd=ROOT
        )
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace")[-2000:])
        return done

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


@pytest.fixture
def project(tmp_path):
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.fail(f"no image {IMAGE}: run `make image` (make test-containers does)")
    p = Project(tmp_path)
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


def _client(port: int) -> Client:
    return Client(("127.0.0.1", port), timeout=10, connect_timeout=10)


def test_compose_up_serves_and_down_leaves_nothing(project):
    t0 = time.monotonic()
    project.run("up", "-d", "--no-build")
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
    project.run("up", "-d", "--no-build")
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
