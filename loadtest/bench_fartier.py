"""Benchmark: the far tier (issue 12): capacity per node count, the cost of R = 2, re-replication.

Every server is a child process on an ephemeral 127.0.0.1 port: kvcache on core 0, the far
nodes (farserver) and this load generator (loadtest/loadgen.py) on core 1, as in
loadtest/bench_memcached.py. Workloads:

 1. capacity   100k keys of 1 KB set through kvcache -m 4 over 1, 2 and 3 far nodes of -m 16
               (R = 1) and 3 nodes with R = 2; then every key is read: the items held
               (hits) per configuration. Reference: one node.
 2. Zipf       Zipf 0.99 gets, then Zipf 0.99 sets, over 200k keys of 100 B, kvcache -m 12
               (about a quarter of the items resident) over 3 far nodes, R = 2 against R = 1:
               what replicated write-back and failover bookkeeping cost. Reference: R = 1.
 3. rereplicate  1 GiB of items (100 KiB values) through kvcache -m 64 over 3 far nodes,
               R = 2; SIGKILL one node; the time until the sweep settled (far_sweeps up,
               far_sweep idle), at --far-rereplicate-rate 64 (the default) and 1024 MB/s.

Run: python -m loadtest.bench_fartier [--only capacity,zipf,rereplicate] [--runs 3]
     [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import time

from loadtest import loadgen
from loadtest.bench_memcached import LOADGEN_CORE, Server, _loadavg, _stats
from loadtest.loadgen import END, STORED

MiB = 1 << 20


def far_node(mb: int) -> Server:
    """A farserver of `mb` MiB on the generator's core."""
    argv = [sys.executable, "-m", "farserver", "-p", "{port}", "-l", "127.0.0.1", "-m", str(mb)]
    return Server(f"farserver -m {mb}", argv, core=str(LOADGEN_CORE), probe=False)


def kvcache(heap_mb: int, nodes: list[Server], replicas: int, *extra: str) -> Server:
    """kvcache on core 0 over `nodes`."""
    far = ",".join(f"{loadgen.HOST}:{n.port}" for n in nodes)
    argv = [sys.executable, "-m", "kvcache", "-p", "{port}", "-l", "127.0.0.1"]
    argv += ["-m", str(heap_mb), "--far", far, "--far-replicas", str(replicas), *extra]
    return Server(f"kvcache -m {heap_mb}, {len(nodes)} nodes, R={replicas}", argv)


def _wait_placement(port: int) -> None:
    """Until kvcache's far tier is available (placement settled)."""
    deadline = time.monotonic() + 30
    while _stats(port).get("far_available") != "1":
        if time.monotonic() > deadline:
            raise RuntimeError("the far tier did not come up")
        time.sleep(0.1)


def _count_hits(port: int, n_keys: int, batch: int = 100) -> int:
    """How many of keys 0..n_keys-1 a multi-get finds."""
    hits = 0
    with socket.create_connection((loadgen.HOST, port)) as s:
        for start in range(0, n_keys, batch):
            keys = b" ".join(loadgen.key_of(i) for i in range(start, min(start + batch, n_keys)))
            s.sendall(b"get " + keys + b"\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                data = s.recv(1 << 20)
                if not data:
                    raise ConnectionError("kvcache closed the connection")
                buf += data
            hits += _values_in(buf)
    return hits


def _values_in(reply: bytes) -> int:
    """The VALUE blocks of a get reply (a value may contain anything: skip by length)."""
    count = 0
    pos = 0
    while reply.startswith(b"VALUE ", pos):
        eol = reply.index(b"\r\n", pos)
        size = int(reply[pos:eol].split()[3])
        pos = eol + 2 + size + 2
        count += 1
    return count


def _preload(port: int, n_keys: int, value: bytes, batch: int) -> float:
    t = loadgen.preload(port, n_keys, value, batch)
    return n_keys * len(value) / t / 1e6


def capacity(args: argparse.Namespace) -> None:
    n_keys, value = 100_000, b"c" * 1000
    print(
        f"1. capacity: {n_keys} keys of {len(value)} B ({n_keys * len(value) / 1e6:.0f} MB) through"
        " kvcache -m 4; far nodes of -m 16 each; then a get of every key"
    )
    base = None
    for count, replicas in ((1, 1), (2, 1), (3, 1), (3, 2)):
        nodes = [far_node(16) for _ in range(count)]
        for n in nodes:
            n.__enter__()
        try:
            with kvcache(4, nodes, replicas) as kv:
                _wait_placement(kv.port)
                mbs = _preload(kv.port, n_keys, value, 200)
                time.sleep(2.5)  # the nodes' gone logs (evictions) are polled every second
                held = _count_hits(kv.port, n_keys)
                base = base or held
                print(
                    f"   {count} node{'s' if count > 1 else ' '} R={replicas}: {held:7d} items held"
                    f" ({held / n_keys:.1%}), {held / base:.2f}x one node; filled at {mbs:.1f} MB/s"
                )
        finally:
            for n in nodes:
                n.__exit__()


def zipf(args: argparse.Namespace) -> None:
    n_keys, value = 200_000, b"v" * 100
    gets = loadgen.get_requests(loadgen.zipf_indexes(n_keys, 400_000, 0.99))
    sets = loadgen.set_requests(loadgen.zipf_indexes(n_keys, 400_000, 0.99, seed=2), value)
    print(
        f"2. Zipf 0.99 over {n_keys} keys of {len(value)} B, kvcache -m 12 over 3 far nodes:"
        f" R=2 against R=1; {args.runs} runs of {args.seconds:.0f} s, alternating, 50 connections"
    )
    rates: dict[tuple[str, int], list[float]] = {}
    nodes = [far_node(256) for _ in range(3)]
    for n in nodes:
        n.__enter__()
    try:
        with kvcache(12, nodes, 1) as one, kvcache(12, nodes, 2) as two:
            # separate tiers over the same nodes: each cache registers its own structure
            for kv in (one, two):
                _wait_placement(kv.port)
                loadgen.preload(kv.port, n_keys, value)
            for workload, requests, term in (("get", gets, END), ("set", sets, STORED)):
                for kv in (one, two):
                    loadgen.run(kv.port, requests, 50, 1.0, 1, term)  # warm-up
                for _ in range(args.runs):
                    for kv, r in ((one, 1), (two, 2)):
                        res = loadgen.run(kv.port, requests, 50, args.seconds, 1, term)
                        rates.setdefault((workload, r), []).append(res.ops_per_s)
            for kv, r in ((one, 1), (two, 2)):
                st = _stats(kv.port)
                print(
                    f"   R={r}: {int(st['local_items']) / max(int(st['curr_items']), 1):.1%}"
                    f" resident, far hits {st.get('far_hits')}, far writes {st.get('far_writes')}"
                )
    finally:
        for n in nodes:
            n.__exit__()
    for workload in ("get", "set"):
        a = statistics.median(rates[(workload, 1)])
        b = statistics.median(rates[(workload, 2)])
        runs = " / ".join(" ".join(f"{x:.0f}" for x in rates[(workload, r)]) for r in (1, 2))
        print(
            f"   Zipf {workload}: R=1 {a:8.0f} ops/s, R=2 {b:8.0f} ops/s: {b / a:.2f}x"
            f"  (runs {runs})"
        )


def rereplicate(args: argparse.Namespace) -> None:
    value = b"r" * (100 * 1024)
    n_keys = 1024 * MiB // len(value)
    print(
        f"3. re-replication: {n_keys} keys of {len(value) // 1024} KiB (1 GiB) through kvcache"
        " -m 64 over 3 far nodes of -m 1024, R=2; SIGKILL one node; time to settled"
    )
    for rate in (64, 1024):
        nodes = [far_node(1024) for _ in range(3)]
        for n in nodes:
            n.__enter__()
        try:
            extra = ("--far-rereplicate-rate", str(rate))
            with kvcache(64, nodes, 2, *extra) as kv:
                _wait_placement(kv.port)
                mbs = _preload(kv.port, n_keys, value, 20)
                before = _stats(kv.port, b"far")
                sweeps = int(before["far_sweeps"])
                os.kill(nodes[1].proc.pid, signal.SIGKILL)
                t0 = time.monotonic()
                while True:
                    st = _stats(kv.port, b"far")
                    if int(st["far_sweeps"]) > sweeps and st["far_sweep"] == "idle":
                        break
                    if time.monotonic() - t0 > 600:
                        raise RuntimeError("re-replication did not settle in 10 minutes")
                    time.sleep(0.05)
                took = time.monotonic() - t0
                copied = int(_stats(kv.port)["far_recopies"])
                scanned = int(st["far_rereplicate_bytes"]) - int(before["far_rereplicate_bytes"])
                print(
                    f"   --far-rereplicate-rate {rate:4d}: settled {took:6.1f} s after the kill;"
                    f" {copied} items ({copied * len(value) / 1e6:.0f} MB) copied, "
                    f"{scanned / 1e6:.0f} MB scanned; filled at {mbs:.0f} MB/s"
                )
        finally:
            for n in nodes:
                n.__exit__()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_fartier", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--only", default="capacity,zipf,rereplicate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    print(f"bench_fartier: load average {_loadavg()}")
    for name in args.only.split(","):
        {"capacity": capacity, "zipf": zipf, "rereplicate": rereplicate}[name](args)


if __name__ == "__main__":
    main()
