"""A real memcached, started on an ephemeral 127.0.0.1 port, as a test oracle.

Tests that compare kvcache's bytes with memcached's use `Memcached`: it starts
Debian's memcached binary (CI installs it), talks to it over a plain socket,
and stops it by its PID. The shared one is the `memcached` fixture;
`private_memcached()` starts one of a test's own, for commands that change the
whole server (flush_all, verbosity, cache_memlimit, stats reset, stats
detail). When the binary is missing both skip the test, saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

__all__ = [
    "ENABLE_MEMCACHED",
    "MEMCACHED_MISSING",
    "Memcached",
    "Proc",
    "free_port",
    "private_memcached",
    "talk",
]

# Why a test needing the oracle skips: tests/conftest.py counts these in one summary line.
MEMCACHED_MISSING = "memcached is not installed"
ENABLE_MEMCACHED = "sudo apt-get install memcached"  # what makes them run (Debian's 1.6.18)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


class Proc:
    """A server process that prints `... listening on 127.0.0.1:PORT`; stopped by PID.

    Its stderr lines (newlines stripped) are kept in `lines`; `port` is the
    one its startup line names (0 when `ready` is None: nothing awaited).
    """

    def __init__(
        self,
        argv: list[str],
        ready: re.Pattern | None = _LISTENING,
        timeout: float = 30.0,
        new_session: bool = False,  # lead a process group, as a shell's foreground job
    ):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=new_session,
        )
        self.lines: list[bytes] = []
        self.port = 0
        started = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                self.lines.append(raw.rstrip(b"\n"))
                m = ready.search(raw) if ready else None
                if m and not self.port:
                    self.port = int(m.group(1))
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        if ready is not None and (not started.wait(timeout) or not self.port):
            self.stop()
            raise RuntimeError(f"{argv} did not start: {self.lines[-5:]!r}")

    def stop(self) -> int:
        """SIGTERM by PID (SIGKILL after 15 s); the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Memcached(Proc):
    """A memcached process on 127.0.0.1 for exchanging raw bytes with."""

    def __init__(self, *args: str):
        binary = shutil.which("memcached")
        if binary is None:
            raise FileNotFoundError(f"{MEMCACHED_MISSING} ({ENABLE_MEMCACHED})")
        port = free_port()
        cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", *args]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        super().__init__(cmd, ready=None)  # memcached prints nothing: poll its port
        self.port = port
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("memcached did not start") from None
                time.sleep(0.02)

    def exchange(self, data: bytes, quiet: float = 0.15, limit: float = 5.0) -> tuple[bytes, bool]:
        """Send `data` on a new connection; (all bytes received, whether it closed).

        Reads until the server has been quiet for `quiet` seconds or closed.
        """
        return talk(self.port, data, quiet, limit)


@contextlib.contextmanager
def private_memcached(*args: str) -> Iterator[Memcached]:
    """A memcached of one's own on 127.0.0.1, stopped after; skips the test when absent."""
    try:
        server = Memcached(*args)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def talk(
    port: int,
    data: bytes,
    quiet: float,
    limit: float,
    done: Callable[[bytearray], bool] | None = None,
) -> tuple[bytes, bool]:
    """Send `data` on a new connection to 127.0.0.1:`port`; (bytes received, closed?).

    Reads until the server is quiet for `quiet` s, closes, `limit` s pass, or
    `done(received)` says the reply is complete.
    """
    out = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        s.sendall(data)
        s.settimeout(quiet)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
            if done is not None and done(out):
                break
    return bytes(out), closed
