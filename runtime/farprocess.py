"""A far-memory node as a child process (`python -m farserver`).

Used where a far node must simply exist: kvcache without `--far` starts one
of its own on an ephemeral loopback port (DESIGN §7), and tests and
benchmarks start real nodes with it. The child prints
`farserver listening on HOST:PORT`; the port is read from that line. A
small thread drains the child's stderr (so it never blocks on a full pipe)
and keeps its lines. The process is stopped by its PID: SIGTERM, then
SIGKILL after a grace period. Starting it again reuses the same port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

__all__ = ["FarProcess"]

_LISTENING = re.compile(rb"^farserver listening on ([0-9.]+):(\d+)$")


class FarProcess:
    """A farserver child process on 127.0.0.1 (or `host`)."""

    def __init__(
        self,
        *args: str,
        port: int = 0,
        host: str = "127.0.0.1",
        memory_mb: int | None = None,
        secret_file: str | None = None,
        timeout: float = 15.0,
    ):
        self.host = host
        self.port = port  # 0: ephemeral, learnt from the startup line
        self.args = list(args)  # extra farserver arguments
        if memory_mb is not None:
            self.args += ["-m", str(memory_mb)]
        if secret_file is not None:
            self.args += ["--secret-file", secret_file]
        self.timeout = timeout  # seconds to wait for the startup line
        self.lines: list[bytes] = []  # the child's stderr lines
        self.proc: subprocess.Popen | None = None
        self._terminated = False
        self.start()

    @property
    def pid(self) -> int:
        """The child's PID."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the child (again after stop(), on the same port) and wait until it listens."""
        cmd = [sys.executable, "-m", "farserver", "-l", self.host, "-p", str(self.port)]
        self.proc = subprocess.Popen(
            cmd + self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._terminated = False
        started = threading.Event()
        threading.Thread(target=self._drain, args=(self.proc, started), daemon=True).start()
        if not started.wait(self.timeout) or self.proc.poll() is not None:
            self.stop()
            tail = b"\n".join(self.lines[-5:]).decode(errors="replace")
            raise RuntimeError(f"farserver did not start: {tail}")

    def _drain(self, proc: subprocess.Popen, started: threading.Event) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip(b"\n")
            self.lines.append(line)
            m = _LISTENING.match(line)
            if m and not started.is_set():
                self.port = int(m.group(2))
                started.set()
        started.set()  # exited before listening: stop waiting

    def pause(self) -> None:
        """Stall the node (SIGSTOP): it keeps its connections and answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """Send SIGTERM by PID, once."""
        if self.proc is not None and not self._terminated and self.proc.poll() is None:
            self._terminated = True
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `grace` seconds; the exit status."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> FarProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
