"""Benchmark: docker-compose.cluster.yml's twemproxy over two kvcache nodes against one node.

Brings the cluster file up as its own compose project (ephemeral 127.0.0.1 ports, a
temporary secret and test certificates), then, in the same run and alternating, drives

    cluster   twemproxy's published port: ketama over kvcache1 and kvcache2
    one node  kvcache1's published port, straight
    host      for reference, kvcache as a process on this host (`-m 64 --far none`, no
              container, no port forwarding): what docker's published ports cost

with loadtest/loadgen.py (the C engine: one process, N connections on one epoll loop,
`depth` requests in flight each), and takes the project down (`down -v`).

Workloads (100-byte values, keys `key:NNNNNNN`, uniform over 10,000 keys, all preloaded
through twemproxy and straight into kvcache1, so every get hits on either path):

    get   one `get` per request
    set   one `set` per request

Printed: the workload, ops/s of each path (median of --runs), cluster / one node, and the
generator's CPU (at ~1.0 of a core the generator is the limit). On a 2-core machine the
two nodes, twemproxy, the far nodes, docker's port forwarding and the generator share
both cores: the cluster cannot scale here, the number shows twemproxy's cost per request,
not what two machines would give.

Needs `make image` (kvcache:local, kvcache-twemproxy:local), a Docker engine and
docker-compose. Only 127.0.0.1 is targeted.

Run: python -m loadtest.bench_cluster [--conns 50] [--seconds 5] [--runs 3] [--depth 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from loadtest import loadgen
from loadtest.bench_memcached import Server
from loadtest.loadgen import END, STORED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.cluster.yml")
SERVICES = ("far1", "far2", "kvcache1", "kvcache2", "twemproxy")
KEYS = 10_000
VALUE = b"v" * 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((loadgen.HOST, 0))
        return s.getsockname()[1]


def _compose_cmd() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    path = shutil.which("docker-compose")
    if path is None:
        sys.exit("bench_cluster: needs `docker compose` or docker-compose")
    return [path]


class Cluster:
    """docker-compose.cluster.yml as a temporary compose project."""

    def __init__(self, tmp: str):
        self.name = f"kvbench{os.getpid()}x{random.randrange(1 << 16):04x}"
        self.proxy_port, self.node1_port, self.node2_port = (_free_port() for _ in range(3))
        secret = os.path.join(tmp, "far_secret")
        with open(secret, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        os.chmod(secret, 0o644)  # the containers' user (uid 10001) reads it
        certs = os.path.join(tmp, "certs")
        subprocess.run(
            ["sh", os.path.join(ROOT, "docker", "make-certs.sh"), certs],
            check=True,
            capture_output=True,
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")},
            "KVCACHE_PORT": str(self.proxy_port),
            "KVCACHE_NODE1_PORT": str(self.node1_port),
            "KVCACHE_NODE2_PORT": str(self.node2_port),
            "KVCACHE_SECRET_FILE": secret,
            "KVCACHE_CERTS": certs,
        }
        self.cmd = [*_compose_cmd(), "-p", self.name, "-f", COMPOSE_FILE]

    def compose(self, *args: str) -> str:
        done = subprocess.run(
            [*self.cmd, *args], capture_output=True, timeout=300, env=self.env, cwd=ROOT
        )
        if done.returncode != 0:
            raise RuntimeError(f"compose {args}: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode()

    def health(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).split()[0]
        out = subprocess.run(["docker", "inspect", cid], capture_output=True, check=True)
        return json.loads(out.stdout)[0]["State"].get("Health", {}).get("Status", "none")

    def up(self, within: float = 180.0) -> float:
        t0 = time.monotonic()
        self.compose("up", "-d", "--no-build")
        while any(self.health(s) != "healthy" for s in SERVICES):
            if time.monotonic() - t0 > within:
                raise RuntimeError(f"not healthy within {within} s")
            time.sleep(1)
        return time.monotonic() - t0

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "10")


def _measure(port: int, workload: str, args: argparse.Namespace) -> loadgen.Result:
    rnd = random.Random(7)
    indexes = [rnd.randrange(KEYS) for _ in range(20_000)]
    if workload == "get":
        return loadgen.run(
            port, loadgen.get_requests(indexes), args.conns, args.seconds, args.depth, END
        )
    return loadgen.run(
        port, loadgen.set_requests(indexes, VALUE), args.conns, args.seconds, args.depth, STORED
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_cluster", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--depth", type=int, default=1)
    args = ap.parse_args(argv)
    if loadgen.c_engine() is None:
        sys.exit("bench_cluster: needs a C compiler for loadtest/cloadgen.c")

    host = Server(
        "kvcache on the host",
        [sys.executable, "-m", "kvcache", "-p", "{port}", "-l", "127.0.0.1", "-m", "64"]
        + ["--far", "none"],
        core=f"0-{(os.cpu_count() or 1) - 1}",
    )
    with tempfile.TemporaryDirectory(prefix="kvcache-bench-cluster-") as tmp, host:
        cluster = Cluster(tmp)
        try:
            started = cluster.up()
            print(f"cluster up, every service healthy, in {started:.1f} s ({os.cpu_count()} CPUs)")
            for port in (cluster.proxy_port, cluster.node1_port, host.port):
                loadgen.preload(port, KEYS, VALUE)
            paths = {"cluster": cluster.proxy_port, "one node": cluster.node1_port}
            paths["host"] = host.port
            print(
                f"workload: 100-byte values, uniform over {KEYS:,} preloaded keys,"
                f" {args.conns} connections, depth {args.depth}, {args.seconds:g} s x"
                f" {args.runs} runs per path, alternating; loadgen engine c"
            )
            print(
                f"{'workload':8} {'cluster ops/s':>14} {'one node ops/s':>15} {'ratio':>6}"
                f" {'host ops/s':>11}  cpu"
            )
            for workload in ("get", "set"):
                results: dict[str, list[loadgen.Result]] = {p: [] for p in paths}
                for _ in range(args.runs):
                    for path, port in paths.items():
                        results[path].append(_measure(port, workload, args))
                med = {p: statistics.median(r.ops_per_s for r in rs) for p, rs in results.items()}
                cpu = max(r.cpu for rs in results.values() for r in rs)
                hits = {p: sum(r.hits for r in rs) for p, rs in results.items()}
                ops = {p: sum(r.ops for r in rs) for p, rs in results.items()}
                if workload == "get" and hits != ops:
                    raise RuntimeError(f"get misses: hits {hits}, replies {ops}")
                print(
                    f"{workload:8} {med['cluster']:14,.0f} {med['one node']:15,.0f}"
                    f" {med['cluster'] / med['one node']:6.2f} {med['host']:11,.0f}  {cpu:.2f}"
                    + ("  SATURATED" if cpu >= loadgen.SATURATED_CPU else "")
                )
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
