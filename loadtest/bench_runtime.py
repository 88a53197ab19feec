"""Benchmark: the far-memory runtime against its references, in one run.

Workloads (a real farserver child process on 127.0.0.1, one per run):

 1. hot deref   RemArray.at() of a resident 100-byte element inside a
                DerefScope, vs the reference: a dict lookup + a memoryview
                slice (what a plain in-process cache does). Target <= 1.5x (issue 11).
 2. far reads   non-temporal RemArray.at() of far 100-byte elements from N
                green threads (N = 1, 16, 64 outstanding), vs the reference:
                a raw blocking-socket PING round trip of the same size to the
                same node, one at a time and 64 pipelined. Target >= 300k/s at 64.
 3. evacuation  64 MiB of 8 KiB elements written through a 4 MiB heap: write
                rate, and the evacuator's write-back MB/s (bytes / busy time).
 4. latency hiding  N green threads doing far reads for a fixed time:
                throughput vs N (it grows until the link saturates).
 5. TLS         far reads (1 and 64 outstanding) to a second node serving
                over mutual TLS (protocol.tls; certificates from
                docker/make-certs.sh), against the plain node in the same run:
                reads/s and the reading process's CPU per read. Skipped
                without openssl.
 6. lookups     32 random resident keys of 12 bytes (4-byte values) read by
                RemHashTable.values_of at once (its warm pass prefetches 16
                keys' entries, words and items before probing), vs the same
                keys read one values_of call each (no warm pass), vs a dict
                (sum(map(d.__getitem__))), in a 2^20-item table (cache
                misses) and a 2^10-item one (the calls' own cost). Printed
                first; `--only lookups` runs it alone.

Run: python -m loadtest.bench_runtime [--seconds S] [--only lookups]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from protocol.far import VERSION, FrameReader, Op, encode_frame, encode_hello
from protocol.tls import client_context
from runtime import hub as H
from runtime.farclient import FarClient
from runtime.farprocess import FarProcess
from runtime.hashtable import RemHashTable
from runtime.manager import Manager
from runtime.scope import DerefScope
from runtime.structures import RemArray

MiB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_hot_deref(n: int = 200_000) -> tuple[float, float, float]:
    """ns per hot deref, per inline dict+slice, and per dict+slice behind a call."""

    def main():
        mgr = Manager(64 * MiB)
        arr = RemArray(mgr, 100, 10_000, prefetch=False)
        for i in range(10_000):
            arr.write(i, bytes([i % 256]) * 100)
        idx = [random.randrange(10_000) for _ in range(n)]
        requests = [idx[k : k + 64] for k in range(0, n, 64)]  # 64 derefs per scope
        scope = DerefScope()
        at = arr.at
        t0 = time.perf_counter()
        for req in requests:
            for i in req:
                at(scope, i)
            scope.release()
        t_deref = time.perf_counter() - t0
        buf = memoryview(bytearray(10_000 * 128))
        table = {i: i * 128 for i in range(10_000)}
        t0 = time.perf_counter()
        for req in requests:
            for i in req:
                off = table[i]
                buf[off : off + 100]
        t_ref = time.perf_counter() - t0

        def lookup(i):  # the same work behind a call, as any Python cache API has
            off = table[i]
            return buf[off : off + 100]

        t0 = time.perf_counter()
        for req in requests:
            for i in req:
                lookup(i)
        t_call = time.perf_counter() - t0
        return t_deref / n * 1e9, t_ref / n * 1e9, t_call / n * 1e9

    return H.run(main)


def bench_lookups(n: int, requests: int = 20_000) -> tuple[float, float, float]:
    """us per 32 random lookups: values_of at once, one values_of per key, a dict."""

    def main():
        table = RemHashTable(Manager(max(64 * MiB, n * 96)))
        keys = [b"%012d" % i for i in range(n)]
        for k in keys:
            table.set(k, b"\1\0\0\0")
        rng = random.Random(1)
        # fresh bytes objects, as a request parses or builds its keys
        reqs = [
            [bytes(bytearray(keys[rng.randrange(n)])) for _ in range(32)] for _ in range(requests)
        ]
        now = int(time.time())
        values_of = table.values_of
        best = [float("inf")] * 3
        ref = dict.fromkeys(keys, 1)
        for _ in range(3):
            t0 = time.perf_counter()
            for r in reqs:
                values_of(r, now)
            t1 = time.perf_counter()
            for r in reqs:
                for k in r:
                    values_of([k], now)
            t2 = time.perf_counter()
            for r in reqs:
                sum(map(ref.__getitem__, r))
            t3 = time.perf_counter()
            best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
        return tuple(1e6 * b / requests for b in best)

    return H.run(main)


def raw_round_trips(port: int, count: int, depth: int, size: int = 100) -> float:
    """Round trips/s of PING frames with `size`-byte bodies, `depth` in flight."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = FrameReader(replies=True)
    s.sendall(encode_frame(1, Op.HELLO, 0, encode_hello(VERSION, b"")))
    while reader.next() is None:
        reader.feed(s.recv(65536))
    body = b"p" * size
    batch = b"".join(encode_frame(i + 2, Op.PING, 0, body) for i in range(depth))
    done = 0
    t0 = time.perf_counter()
    while done < count:
        s.sendall(batch)
        got = 0
        while got < depth:
            while reader.next() is not None:
                got += 1
            if got < depth:
                reader.feed(s.recv(1 << 20))
        done += depth
    elapsed = time.perf_counter() - t0
    s.close()
    return done / elapsed


def far_reads(
    port: int,
    threads: int,
    seconds: float,
    batch: int = 1,
    n_elems: int = 200_000,
    tls: ssl.SSLContext | None = None,
    cpu: list[float] | None = None,
) -> float:
    """Non-temporal far reads/s of 100-byte elements.

    `threads` green threads each keep `batch` reads outstanding: batch 1 is
    one read per park (latency hiding by threads); a batch is at_many(), all
    fetches sent before one park (a multi-get). `tls`: the FarClient's TLS
    context; `cpu` gets this process's CPU seconds per read appended.
    """

    def main():
        far = FarClient("127.0.0.1", port, timeout=5, ssl_context=tls)
        mgr = Manager(4 * MiB, far)
        mgr.start()
        far.wait_ready(10)
        arr = RemArray(mgr, 100, n_elems, prefetch=False)
        for i in range(n_elems):  # 20 MB through a 4 MiB heap: nearly all go far
            arr.write(i, i.to_bytes(8, "little") * 12 + b"abcd")
        far_idx = [i for i in range(n_elems) if not arr.words[i] >> 63]
        pick = len(far_idx)
        count = [0]
        stop = time.perf_counter() + seconds

        def reader(seed):
            rnd = random.Random(seed)
            scope = DerefScope()
            while time.perf_counter() < stop:
                if batch == 1:
                    arr.at(scope, far_idx[rnd.randrange(pick)], nt=True)
                else:
                    wanted = [far_idx[rnd.randrange(pick)] for _ in range(batch)]
                    arr.at_many(scope, wanted, nt=True)
                count[0] += batch
            scope.release()

        t0 = time.perf_counter()
        c0 = time.process_time()
        for t in [H.spawn(reader, k) for k in range(threads)]:
            t.join()
        rate = count[0] / (time.perf_counter() - t0)
        if cpu is not None:
            cpu.append((time.process_time() - c0) / max(count[0], 1))
        mgr.close()
        return rate

    return H.run(main)


def evacuation(port: int) -> tuple[float, float, dict]:
    """(write MB/s, evacuator write-back MB/s, stats) for 64 MiB through 4 MiB."""

    def main():
        far = FarClient("127.0.0.1", port, timeout=5)
        mgr = Manager(4 * MiB, far)
        mgr.start()
        far.wait_ready(10)
        n = 64 * MiB // 8192
        arr = RemArray(mgr, 8192, n, prefetch=False)
        block = b"e" * 8192
        t0 = time.perf_counter()
        for i in range(n):
            arr.write(i, block)
        elapsed = time.perf_counter() - t0
        ev = mgr.evacuator
        stats = mgr.stats()
        mgr.close()
        busy = ev.busy_seconds or 1e-9
        return 64 / elapsed, ev.writeback_bytes / MiB / busy, stats

    return H.run(main)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_runtime", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per far-read run")
    ap.add_argument("--only", choices=["lookups"], help="run one workload")
    args = ap.parse_args(argv)
    extra = argv if argv is not None else sys.argv[1:]
    print("command:", " ".join(["python", "-m", "loadtest.bench_runtime", *extra]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("far node: farserver child process on 127.0.0.1 (shares the 2 cores)")
    print()
    for n in (1 << 20, 1 << 10):
        batched, one_by_one, ref = bench_lookups(n)
        print(
            f"6. lookups, {n:7d} items: 32 keys by one values_of {batched:6.2f} us,"
            f" one call per key {one_by_one:6.2f} us ({one_by_one / batched:.2f}x),"
            f" dict reference {ref:6.2f} us"
        )
    if args.only == "lookups":
        return
    deref, ref, call = bench_hot_deref()
    print(
        f"1. hot deref      {deref:7.0f} ns   dict+slice reference {ref:5.0f} ns"
        f" (ratio {deref / ref:.2f}x, target <= 1.5x); as a function call {call:5.0f} ns"
        f" (ratio {deref / call:.2f}x)"
    )
    with FarProcess(memory_mb=2048) as node:
        raw1 = raw_round_trips(node.port, 20_000, 1)
        raw64 = raw_round_trips(node.port, 200_000, 64)
        print(
            f"2. raw loopback PING (100 B): {raw1:9.0f} /s at 1 outstanding, {raw64:9.0f} /s at 64"
        )
        for n in (1, 16, 64):
            ref = raw1 if n == 1 else raw64
            label = "1" if n == 1 else "64"
            rate = far_reads(node.port, n, args.seconds)
            print(
                f"   far reads (100 B) {n:3d} outstanding, {n:3d} green threads x 1:"
                f" {rate:9.0f} /s ({rate / ref:.2f}x raw {label})"
            )
            if n > 1:
                rate = far_reads(node.port, 1, args.seconds, batch=n)
                print(
                    f"   far reads (100 B) {n:3d} outstanding,   1 green thread x {n:2d}:"
                    f" {rate:9.0f} /s ({rate / ref:.2f}x raw {label})"
                )
        wr, evac, stats = evacuation(node.port)
        print(
            f"3. evacuation: writes through a 4 MiB heap {wr:6.1f} MB/s; evacuator"
            f" write-back {evac:6.1f} MB/s of busy time; {stats['evacuations']} objects,"
            f" peak heap {stats['peak_used_bytes'] // MiB} MiB of {stats['budget_bytes'] // MiB}"
        )
        print("4. latency hiding: far reads/s vs green threads")
        for n in (1, 2, 4, 8, 16, 32, 64, 128):
            rate = far_reads(node.port, n, args.seconds / 2)
            print(f"   {n:4d} threads {rate:9.0f} /s")
        tls_cost(node.port, args.seconds)


def tls_cost(plain_port: int, seconds: float) -> None:
    """Workload 5: far reads over mutual TLS against the plain node, same run."""
    if shutil.which("openssl") is None:
        print("5. TLS: skipped (no openssl to make test certificates)")
        return
    with tempfile.TemporaryDirectory() as certs:
        subprocess.run(
            ["sh", os.path.join(ROOT, "docker", "make-certs.sh"), certs],
            check=True,
            capture_output=True,
        )
        c = os.path.join(certs, "")
        tls = client_context(c + "ca.crt", c + "client.crt", c + "client.key")
        args = ["--tls-cert", c + "server.crt", "--tls-key", c + "server.key", "--tls-ca"]
        with FarProcess(*args, c + "ca.crt", memory_mb=2048) as node:
            print("5. TLS (mutual, TLS 1.3) vs plain TCP: far reads of 100 B, CPU of this process")
            for n in (1, 64):
                for label, port, ctx in (("plain", plain_port, None), ("TLS", node.port, tls)):
                    cpu: list[float] = []
                    rate = far_reads(port, n, seconds, tls=ctx, cpu=cpu)
                    print(
                        f"   {n:3d} outstanding, {label:5s} {rate:9.0f} /s,"
                        f" {cpu[0] * 1e6:6.1f} us of CPU per read"
                    )


if __name__ == "__main__":
    main()
