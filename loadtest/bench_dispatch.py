"""Benchmark: kvcache's request path without sockets, in ns per request.

DESIGN §9: the hot path (a resident get) is parse, one dict lookup, one
metadata word test, one memoryview, one write. This drives the real server
code (kvcache.server.Connection over a Dispatcher over a RemHashTable, no
far node, everything resident) with a fake transport that only counts bytes,
so what is measured is exactly the per-request Python work the server does
between the socket read and the socket write.

Workloads (100-byte values, 10k keys preloaded, requests fed in reads of
`--batch` requests, the way a socket read delivers a burst):

    get k            resident hit
    get k (miss)     a key never stored: answered by the cuckoo filter
    set k 0 0 100    overwrite of a resident key
    get k1 .. k100   100-key multi-get, reported per key
    mg k v f t       meta get hit

Reference, same run: protocol only (parse + compose the same replies, no
storage: loadtest.bench_protocol's measure), so the difference is the
dispatcher + table cost.

Run: python -m loadtest.bench_dispatch [--requests 20000] [--batch 1] [--repeat 5] [--profile W]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys

from kvcache.dispatcher import Dispatcher
from kvcache.server import Listener
from loadtest.bench_protocol import best_of
from protocol.memcache import END, NEED_DATA, Parser, value_header
from runtime import hub as _hub
from runtime.hashtable import RemHashTable
from runtime.manager import Manager

VALUE = b"v" * 100
KEYS = 10_000


class _Transport:
    """Counts written bytes; never closes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _key(i: int) -> bytes:
    return b"key:%07d" % (i % KEYS)


def workloads(n: int) -> dict[str, list[bytes]]:
    """Request lists per workload name."""
    step = 7919
    return {
        "get": [b"get " + _key(i * step) + b"\r\n" for i in range(n)],
        "get miss": [b"get nokey:%07d\r\n" % i for i in range(n)],
        "set": [b"set " + _key(i * step) + b" 0 0 100\r\n" + VALUE + b"\r\n" for i in range(n)],
        "mget100": [
            b"get " + b" ".join(_key((i * 100 + j) * step) for j in range(100)) + b"\r\n"
            for i in range(max(1, n // 100))
        ],
        "mg": [b"mg " + _key(i * step) + b" v f t\r\n" for i in range(n)],
    }


def _chunks(reqs: list[bytes], batch: int) -> list[bytes]:
    return [b"".join(reqs[i : i + batch]) for i in range(0, len(reqs), batch)]


def _server():
    table = RemHashTable(Manager(64 << 20))
    for i in range(KEYS):
        table.set(_key(i), VALUE, 0, 0, i + 1)
    disp = Dispatcher(table)
    listener = Listener(disp, _hub.get_hub(), 1024, 1 << 20)
    conn = listener.protocol()
    transport = _Transport()
    conn.connection_made(transport)
    return conn, transport


def _protocol_only(chunks: list[bytes]) -> None:
    """Reference: parse, then compose a hit reply per key, one join per chunk."""
    p = Parser()
    for data in chunks:
        p.feed(data)
        out: list = []
        while True:
            ev = p.next_event()
            if ev is NEED_DATA:
                break
            if ev.cmd == "set":
                out.append(b"STORED\r\n")
                continue
            for k in getattr(ev, "keys", None) or [ev.key]:
                out.append(value_header(k, 0, 100, None))
                out.append(VALUE)
                out.append(b"\r\n")
            out.append(END)
        b"".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.bench_dispatch", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1, help="requests per simulated read")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", metavar="WORKLOAD", help="cProfile one workload instead")
    args = ap.parse_args(argv)

    def run():
        conn, transport = _server()
        loads = workloads(args.requests)
        if args.profile:
            chunks = _chunks(loads[args.profile], args.batch)
            prof = cProfile.Profile()
            prof.enable()
            for data in chunks:
                conn.data_received(data)
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
            return
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores,"
            f" Python {platform.python_version()}"
        )
        print(
            f"command: python -m loadtest.bench_dispatch --requests {args.requests}"
            f" --batch {args.batch} --repeat {args.repeat}"
        )
        print(f"{KEYS} keys of 100 B resident, no far node; best of {args.repeat}")
        print(f"{'workload':<10} {'kvcache':>12} {'protocol only':>15} {'dispatch cost':>14}")
        for name, reqs in loads.items():
            chunks = _chunks(reqs, args.batch)
            per = 100 if name == "mget100" else 1
            count = len(reqs) * per

            def serve(chunks=chunks):
                for data in chunks:
                    conn.data_received(data)

            t = best_of(serve, args.repeat) / count * 1e9
            ref = best_of(lambda chunks=chunks: _protocol_only(chunks), args.repeat) / count * 1e9
            unit = "ns/key" if per > 1 else "ns/req"
            print(f"{name:<10} {t:8.0f} {unit} {ref:9.0f} {unit} {t - ref:8.0f} {unit}")
        assert transport.written > 0

    _hub.run(run)


if __name__ == "__main__":
    main()
