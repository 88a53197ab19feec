"""Benchmark: parse + compose cost of protocol.memcache, per request.

Workloads (each parsed from a pipelined buffer of N requests fed at once, the
way a server reads a socket, and each answered with its composed reply):

    get k                 hit reply: VALUE header + 100-byte value + END
    set k 0 0 100         + 100-byte data block; reply STORED
    mg k v f t            hit reply composed by compose_mg_hit
    get k0 ... k99        100-key multi-get, reported per key
    1 MB set              arriving in 1460-byte chunks (one TCP MSS), MB/s

Reference, same run: the floor of any Python parser of these lines, i.e.
bytes.find + slice + split + one dict lookup per request, no events and no
replies. Targets on the 2-core dev machine: get parsed in <= 1 us, <= 0.2 us
per key of a 100-key multi-get, large values parsed in linear time (4 MB and
16 MB values give the same MB/s within noise; 1 MB fits the CPU caches and
runs faster).

Run: python -m loadtest.bench_protocol [--requests N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from protocol.memcache import (
    END,
    NEED_DATA,
    STORED,
    ItemInfo,
    Parser,
    compose_mg_hit,
    value_header,
)

VALUE = b"v" * 100


def best_of(fn, repeat: int) -> float:
    """The shortest of `repeat` timed calls of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _serve(buf: bytes, reply) -> int:
    """Parse every request in `buf` and compose its reply; return the count."""
    p = Parser()
    p.feed(buf)
    next_event = p.next_event
    out: list = []
    n = 0
    if reply is None:
        while next_event() is not NEED_DATA:
            n += 1
        return n
    while True:
        ev = next_event()
        if ev is NEED_DATA:
            break
        reply(ev, out)
        n += 1
    return n


def _reply_get(ev, out: list) -> None:
    for key in ev.keys:
        out.append(value_header(key, 0, 100))
        out.append(VALUE)
        out.append(b"\r\n")
    out.append(END)


def _reply_set(ev, out: list) -> None:
    out.append(STORED)


def _reply_mg(ev, out: list) -> None:
    out.append(compose_mg_hit(ev, ItemInfo(ev.key, 100, 0, 1, -1)))
    out.append(VALUE)
    out.append(b"\r\n")


def _floor(buf: bytes) -> int:
    table = {b"get": 1, b"set": 2, b"mg": 3}
    pos = 0
    n = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return n
        toks = buf[pos : nl - 1].split(b" ")
        table.get(toks[0])
        pos = nl + 1
        n += 1


def bench_requests(name: str, line: bytes, reply, count: int, repeat: int, per: int = 1) -> None:
    """Print ns per request (or per key) for parse only, parse+compose, and the floor."""
    buf = line * count
    assert _serve(buf, reply) == count
    scale = 1e9 / (count * per)
    parse = best_of(lambda: _serve(buf, None), repeat) * scale
    both = best_of(lambda: _serve(buf, reply), repeat) * scale
    floor = best_of(lambda: _floor(buf), repeat) * scale
    unit = "ns/key" if per > 1 else "ns/req"
    print(f"{name:<28} parse {parse:6.0f}  parse+compose {both:6.0f}  floor {floor:5.0f}  {unit}")


def bench_large(size: int, repeat: int) -> float:
    """MB/s (median of `repeat`) to parse a `size`-byte set fed in 1460-byte chunks."""
    data = b"set big 0 0 %d\r\n" % size + b"x" * size + b"\r\n"
    chunks = [data[i : i + 1460] for i in range(0, len(data), 1460)]
    times = []
    for _ in range(repeat):
        p = Parser(item_size_max=size + 4096)
        got = None
        t0 = time.perf_counter()
        for c in chunks:
            p.feed(c)
            ev = p.next_event()
            if ev is not NEED_DATA:
                got = ev
        times.append(time.perf_counter() - t0)
        assert got is not None and len(got.value) == size
        del got, ev, p
    t = statistics.median(times)
    mbps = size / t / 1e6
    label = f"set {size} B in 1460 B chunks"
    print(f"{label:<28} {mbps:8.0f} MB/s   ({t * 1e3:.2f} ms median)")
    return mbps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_protocol", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--requests", type=int, default=20000, help="requests per pipelined buffer")
    ap.add_argument("--repeat", type=int, default=7, help="runs; the best is reported")
    args = ap.parse_args(argv)
    print(
        "command:",
        " ".join(
            [os.path.basename(sys.executable), "-m", "loadtest.bench_protocol"]
            + (argv if argv is not None else sys.argv[1:])
        ),
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"workload: {args.requests} pipelined requests per buffer, best of {args.repeat}")
    print("reference: 'floor' = find + split + dict lookup per line, no events, no replies")
    print()
    n, r = args.requests, args.repeat
    bench_requests("get k", b"get k\r\n", _reply_get, n, r)
    bench_requests("set k 0 0 100", b"set k 0 0 100\r\n" + VALUE + b"\r\n", _reply_set, n, r)
    bench_requests("mg k v f t", b"mg k v f t\r\n", _reply_mg, n, r)
    multi = b"get " + b" ".join(b"key%d" % i for i in range(100)) + b"\r\n"
    bench_requests("get k0..k99 (per key)", multi, _reply_get, max(n // 100, 10), r, per=100)
    bench_large(1 << 20, r)  # fits the CPU caches: faster per byte than the rest
    four = bench_large(4 << 20, r)
    sixteen = bench_large(16 << 20, max(r // 2, 3))
    print(f"linearity: 16 MB rate / 4 MB rate = {sixteen / four:.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
