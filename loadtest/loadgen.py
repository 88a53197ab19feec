"""A memcached text-protocol load generator: N connections, one process.

    one process, one epoll loop
    conn 1 ─┐                      each connection keeps `depth` requests in
    conn 2 ─┼─ epoll ─ 127.0.0.1   flight (default 1: no pipelining; send,
    ...     │                      wait for the whole reply, send the next)
    conn N ─┘

Requests are prebuilt byte strings cycled through (so no key choice or
formatting is done while measuring). A reply is counted by its terminator
(`END\\r\\n` for get, `STORED\\r\\n` for set), hits by `VALUE ` headers; the
last bytes of each read are carried over so a terminator split across reads
is still counted once. Values must not contain the terminators.

It measures its own CPU (os.times) over the run: `cpu` near 1.0 means the
generator, not the server, may be the bottleneck (`saturated` is set at
>= 0.9 of one core); raise `depth` to push more load per wakeup.

Two engines do exactly that: loadtest/cloadgen.c (compiled with the system's
C compiler on first use, cached in the temp directory by the source's hash),
and this module's Python loop, the fallback without a compiler. The Python
one saturates a core near 100k replies/s here, below what memcached and a
compiled server reach, so benchmarks use the C one (`engine="auto"`).

Only 127.0.0.1 is ever targeted.

Run: python -m loadtest.loadgen PORT get|set|mget [--conns 50] [--seconds 5] [--depth 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

__all__ = [
    "Result",
    "get_requests",
    "mget_requests",
    "preload",
    "run",
    "set_requests",
    "zipf_indexes",
]

HOST = "127.0.0.1"  # the only address this generator talks to
END = b"END\r\n"
STORED = b"STORED\r\n"
VALUE_HDR = b"VALUE "
SATURATED_CPU = 0.9  # fraction of one core at which the generator is the limit
RECV_SIZE = 1 << 16  # bytes per recv: one reply of any workload here fits


@dataclass
class Result:
    """One timed run of the generator."""

    ops: int  # replies received
    hits: int  # VALUE headers received (keys found)
    seconds: float  # wall time of the measured run
    cpu: float  # generator CPU seconds / wall seconds (1.0 = one core busy)
    wakeups: int = 0  # epoll waits that returned events
    engine: str = "python"  # "c" (cloadgen.c) or "python"

    @property
    def per_wakeup(self) -> float:
        return self.ops / max(self.wakeups, 1)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def hits_per_s(self) -> float:
        return self.hits / self.seconds

    @property
    def saturated(self) -> bool:
        return self.cpu >= SATURATED_CPU


def key_of(i: int) -> bytes:
    """The key of item number `i`."""
    return b"key:%07d" % i


def get_requests(indexes: list[int]) -> list[bytes]:
    """One `get` request per index."""
    return [b"get " + key_of(i) + b"\r\n" for i in indexes]


def mget_requests(indexes: list[int], per: int) -> list[bytes]:
    """`get k1 ... kper` requests, `per` consecutive indexes each."""
    return [
        b"get " + b" ".join(key_of(i) for i in indexes[k : k + per]) + b"\r\n"
        for k in range(0, len(indexes) - per + 1, per)
    ]


def set_requests(indexes: list[int], value: bytes) -> list[bytes]:
    """One `set` of `value` per index."""
    head = b" 0 0 %d\r\n" % len(value)
    return [b"set " + key_of(i) + head + value + b"\r\n" for i in indexes]


def zipf_indexes(n_keys: int, count: int, s: float, seed: int = 1) -> list[int]:
    """`count` draws of ranks 0..n_keys-1 with P(rank r) ~ 1/(r+1)^s, shuffled to keys."""
    rnd = random.Random(seed)
    cum = []
    total = 0.0
    for r in range(n_keys):
        total += 1.0 / (r + 1) ** s
        cum.append(total)
    ranks = rnd.choices(range(n_keys), cum_weights=cum, k=count)
    perm = list(range(n_keys))  # hot ranks land on keys all over the key space
    rnd.shuffle(perm)
    return [perm[r] for r in ranks]


def preload(port: int, n_keys: int, value: bytes, batch: int = 500) -> float:
    """Set keys 0..n_keys-1 to `value`, `batch` pipelined at a time; return seconds."""
    t0 = time.perf_counter()
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for start in range(0, n_keys, batch):
            reqs = set_requests(list(range(start, min(start + batch, n_keys))), value)
            s.sendall(b"".join(reqs))
            want = len(reqs)
            got = 0
            buf = b""
            while got < want:
                data = s.recv(1 << 16)
                if not data:
                    raise ConnectionError("server closed the connection during preload")
                buf += data
                got = buf.count(b"\r\n")
            if buf.count(STORED) != want:
                raise RuntimeError(f"preload: not all stored: {buf[:200]!r}")
    finally:
        s.close()
    return time.perf_counter() - t0


_C_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cloadgen.c")


def c_engine() -> str | None:
    """The path of the compiled C engine (built on first use), or None without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not os.path.exists(_C_SOURCE):
        return None
    with open(_C_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    binary = os.path.join(tempfile.gettempdir(), f"kvcache-cloadgen-{digest}")
    if not os.path.exists(binary):
        tmp = f"{binary}.{os.getpid()}"
        build = subprocess.run([cc, "-O2", "-o", tmp, _C_SOURCE], capture_output=True)
        if build.returncode != 0:
            return None
        os.replace(tmp, binary)
    return binary


def run(
    port: int,
    requests: list[bytes],
    conns: int = 50,
    seconds: float = 5.0,
    depth: int = 1,
    terminator: bytes = END,
    engine: str = "auto",
) -> Result:
    """Drive `conns` connections for `seconds`, `depth` requests in flight on each.

    engine: "c", "python", or "auto" (C when a compiler is present).
    """
    binary = c_engine() if engine in ("auto", "c") else None
    if binary is not None:
        return _run_c(binary, port, requests, conns, seconds, depth, terminator)
    if engine == "c":
        raise RuntimeError("no C compiler for loadtest/cloadgen.c")
    return _run_python(port, requests, conns, seconds, depth, terminator)


def _run_c(
    binary: str,
    port: int,
    requests: list[bytes],
    conns: int,
    seconds: float,
    depth: int,
    terminator: bytes,
) -> Result:
    with tempfile.NamedTemporaryFile(prefix="kvcache-requests-") as f:
        f.write(b"".join(struct.pack("<I", len(r)) + r for r in requests))
        f.flush()
        term = terminator.decode().replace("\r", "\\r").replace("\n", "\\n")
        out = subprocess.run(
            [binary, str(port), f.name, term, str(conns), str(seconds), str(depth)],
            capture_output=True,
            timeout=seconds + 60,
        )
    if out.returncode != 0:
        raise ConnectionError(f"cloadgen: {out.stderr.decode(errors='replace').strip()}")
    ops, hits, elapsed, cpu, wakeups = out.stdout.split()
    secs = float(elapsed)
    return Result(int(ops), int(hits), secs, float(cpu) / secs, int(wakeups), "c")


def _run_python(
    port: int,
    requests: list[bytes],
    conns: int,
    seconds: float,
    depth: int,
    terminator: bytes,
) -> Result:
    socks = []
    ep = select.epoll()
    if depth > 1:  # prebuilt pipelined batches, `depth` requests each
        requests = [
            b"".join(requests[(k + j) % len(requests)] for j in range(depth))
            for k in range(0, len(requests), depth)
        ]
    nreq = len(requests)
    # per fd: [recv, send, outstanding, next batch index, carried tail]
    state: dict[int, list] = {}
    keep = max(len(terminator), len(VALUE_HDR)) - 1  # bytes carried between reads
    try:
        for c in range(conns):
            s = socket.create_connection((HOST, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
            ep.register(s.fileno(), select.EPOLLIN)
            state[s.fileno()] = [s.recv, s.send, 0, (c * 7919) % nreq, b""]
        ops = 0
        hits = 0
        t_start = time.perf_counter()
        cpu_start = os.times()
        stop = t_start + seconds
        for st in state.values():
            st[1](requests[st[3]])
            st[2] = depth
            st[3] = (st[3] + 1) % nreq
        poll = ep.poll
        clock = time.perf_counter
        idle = 0
        wakeups = 0  # polls that returned events
        ready: list[list] = []  # connections whose replies are all in
        running = True
        while running:
            events = poll(0.5)
            running = clock() < stop
            if not events:
                idle += 1
                if idle > 4:  # 2.5 s in a row with no reply
                    raise TimeoutError("server stopped answering")
                continue
            idle = 0
            for fd, _ in events:
                st = state[fd]
                data = st[0](RECV_SIZE)
                if not data:
                    raise ConnectionError("server closed a connection")
                tail = st[4]
                if tail:
                    data = tail + data
                done = data.count(terminator)
                hits += data.count(VALUE_HDR)
                if tail:  # its own matches were counted last time
                    done -= tail.count(terminator)
                    hits -= tail.count(VALUE_HDR)
                st[4] = b"" if data.endswith(terminator) else data[-keep:]
                if done:
                    ops += done
                    st[2] -= done
                    if st[2] == 0 and running:
                        ready.append(st)
            # the next requests go out after the whole batch is read: a burst
            # per wakeup, so the server too reads many per wakeup (sending each
            # at once locks into one wakeup per request on both sides)
            wakeups += 1
            for st in ready:
                i = st[3]
                st[1](requests[i])
                st[2] = depth
                st[3] = i + 1 if i + 1 < nreq else 0
            ready.clear()
        elapsed = time.perf_counter() - t_start
        cpu_end = os.times()
    finally:
        ep.close()
        for s in socks:
            s.close()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    return Result(ops, hits, elapsed, cpu / elapsed, wakeups)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.loadgen", description=__doc__.splitlines()[0]
    )
    ap.add_argument("port", type=int, help="server port on 127.0.0.1")
    ap.add_argument("workload", choices=["get", "set", "mget"])
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--no-preload", action="store_true")
    ap.add_argument("--engine", choices=["auto", "c", "python"], default="auto")
    args = ap.parse_args(argv)
    value = b"v" * 100
    rnd = random.Random(1)
    idx = [rnd.randrange(args.keys) for _ in range(100_000)]
    if args.workload != "set" and not args.no_preload:
        preload(args.port, args.keys, value)
    if args.workload == "get":
        reqs, term = get_requests(idx), END
    elif args.workload == "set":
        reqs, term = set_requests(idx, value), STORED
    else:
        reqs, term = mget_requests(idx, 100), END
    r = run(args.port, reqs, args.conns, args.seconds, args.depth, term, args.engine)
    print(
        f"{args.workload} ({r.engine} engine): {r.ops_per_s:.0f} ops/s,"
        f" {r.hits_per_s:.0f} hits/s,"
        f" {r.per_wakeup:.1f} replies/wakeup,"
        f" loadgen cpu {r.cpu:.2f} of a core{' (SATURATED)' if r.saturated else ''}"
    )


if __name__ == "__main__":
    main()
