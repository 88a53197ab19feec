"""How much memory kvcache and its far node really take: fill, then read RSS.

    python -m loadtest.rss_fill ITEMS VALUE_BYTES [-m 64] [--far-memory 512] [--noreply]

Starts `kvcache -p 0 -m M --far-memory F` (an embedded far node) on
127.0.0.1, sets ITEMS keys `key:%012d` (16 bytes) of VALUE_BYTES each, in
pipelined batches of 1000 whose replies are awaited (with --noreply: sent as
fast as the socket takes them, no replies), then prints both processes' RSS
(VmRSS, and VmHWM: the peak) and the item counts from `stats`. This is where the compose file's
mem_limit values and README's tuning rule come from; the reference in the
same run is each process's RSS before the fill. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

__all__ = ["main", "rss_mib"]

_LISTENING = re.compile(rb"kvcache listening on 127\.0\.0\.1:(\d+)")
BATCH = 1000  # sets per pipelined batch


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's VmRSS (or VmHWM: its peak RSS), MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _mem(pid: int) -> str:
    return f"{rss_mib(pid):.0f} MiB (peak {rss_mib(pid, 'VmHWM'):.0f})"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _stats(sock: socket.socket) -> dict[str, str]:
    sock.sendall(b"stats\r\n")
    buf = b""
    while not buf.endswith(b"END\r\n"):
        buf += sock.recv(65536)
    return dict(line.split()[1:3] for line in buf.decode().splitlines() if line.startswith("STAT"))


def fill(sock: socket.socket, items: int, size: int, noreply: bool) -> None:
    """Set `items` keys of `size` bytes."""
    value = os.urandom(size).replace(b"\r\n", b"xx")
    flag = b" noreply" if noreply else b""
    for base in range(0, items, BATCH):
        count = min(items, base + BATCH) - base
        sock.sendall(
            b"".join(
                b"set key:%012d 0 0 %d%s\r\n%s\r\n" % (i, size, flag, value)
                for i in range(base, base + count)
            )
        )
        if not noreply:
            got = b""
            while got.count(b"\r\n") < count:
                got += sock.recv(1 << 20)
    sock.sendall(b"mn\r\n")  # wait until everything sent has been read and run
    got = b""
    while not got.endswith(b"MN\r\n"):
        got += sock.recv(1 << 20)


def main(argv: list[str] | None = None) -> int:
    """Run one fill and print the RSS of kvcache and of its far node."""
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.rss_fill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the docstring's lines
    )
    ap.add_argument("items", type=int)
    ap.add_argument("value_bytes", type=int)
    ap.add_argument("-m", type=int, default=64, help="kvcache local heap MiB (64)")
    ap.add_argument("--far-memory", type=int, default=512, help="far node MiB (512)")
    ap.add_argument("--noreply", action="store_true", help="blast noreply sets")
    a = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "kvcache", "-p", "0", "-l", "127.0.0.1", "-m", str(a.m)]
    cmd += ["--far-memory", str(a.far_memory)]
    print(
        f"workload: {a.items} x {a.value_bytes}-byte values, 16-byte keys, "
        f"{'noreply' if a.noreply else 'replies awaited per 1000'}; kvcache {' '.join(cmd[3:])}"
    )
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        port = 0
        for raw in proc.stderr:
            m = _LISTENING.search(raw)
            if m:
                port = int(m.group(1))
                break
        if not port:
            raise SystemExit("kvcache did not start")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
        far_pid = _children(proc.pid)[0]
        print(f"before: kvcache {rss_mib(proc.pid):.0f} MiB, far node {rss_mib(far_pid):.0f} MiB")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            started = time.perf_counter()
            fill(sock, a.items, a.value_bytes, a.noreply)
            took = time.perf_counter() - started
            time.sleep(2)  # let write-backs finish
            st = _stats(sock)
        print(
            f"filled in {took:.1f} s: local_items {st['local_items']}, far_items {st['far_items']}"
        )
        print(f"after:  kvcache {_mem(proc.pid)}, far node {_mem(far_pid)}")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
