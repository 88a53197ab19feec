"""A real kvcache server process on an ephemeral 127.0.0.1 port, for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

from oracle import talk

__all__ = ["KvCache", "converse", "exchange", "normalize"]

_LISTENING = re.compile(rb"kvcache listening on 127\.0\.0\.1:(\d+)")


class KvCache:
    """`python -m kvcache -p 0 -l 127.0.0.1 *args`, stopped by PID."""

    def __init__(self, *args: str, timeout: float = 20.0):
        cmd = [sys.executable, "-m", "kvcache", "-p", "0", "-l", "127.0.0.1", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = 0
        self.lines: list[bytes] = []
        started = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                self.lines.append(raw.rstrip(b"\n"))
                m = _LISTENING.search(raw)
                if m and not self.port:
                    self.port = int(m.group(1))
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        if not started.wait(timeout) or not self.port:
            self.stop()
            raise RuntimeError(f"kvcache did not start: {self.lines[-5:]!r}")

    def stop(self) -> int:
        """SIGTERM by PID; the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> KvCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def exchange(port: int, data: bytes, quiet: float = 0.3, limit: float = 10.0) -> tuple[bytes, bool]:
    """Send `data` on a new connection; (everything received, whether it closed)."""
    return talk(port, data, quiet, limit)


def normalize(data: bytes) -> bytes:
    """Blank out what may differ: cas uniques and version strings."""
    data = re.sub(rb"(VALUE \S+ \d+ \d+) \d+\r\n", rb"\1 CAS\r\n", data)
    data = re.sub(rb" c\d+", b" cCAS", data)
    return re.sub(rb"VERSION \S+", b"VERSION X", data)


def converse(port: int, data: bytes, quiet: float = 1.0, limit: float = 10.0) -> tuple[bytes, bool]:
    """Send `data` then an `mn` sentinel; read until its MN (or quiet/close).

    Faster than exchange(): no quiet wait when every `mn` of `data` and the
    sentinel are answered. (everything received, whether it closed).
    """
    want = len(re.findall(rb"(?:^|\n)mn[ \r]", data)) + 1
    return talk(
        port,
        data + b"mn\r\n",
        quiet,
        limit,
        lambda out: out.endswith(b"MN\r\n") and out.count(b"MN\r\n") >= want,
    )
