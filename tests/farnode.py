"""A real far-memory node process on 127.0.0.1, for tests.

`FarNode` starts `python -m farserver` on a given or ephemeral port, waits
for its "farserver listening on 127.0.0.1:PORT" line, and stops it by PID
(SIGTERM, then SIGKILL). `pause()`/`resume()` stall it with SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

__all__ = ["FarNode"]

_LISTENING = re.compile(rb"farserver listening on 127\.0\.0\.1:(\d+)")


class FarNode:
    """A farserver child process."""

    def __init__(self, port: int = 0, memory_mb: int = 1024, secret_file: str | None = None):
        self.memory_mb = memory_mb
        self.secret_file = secret_file
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start the process (again, on the same port after a stop)."""
        cmd = [sys.executable, "-m", "farserver", "-l", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-m", str(self.memory_mb)]
        if self.secret_file:
            cmd += ["--secret-file", self.secret_file]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        seen = b""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                seen += chunk
                m = _LISTENING.search(seen)
                if m:
                    self.port = int(m.group(1))
                    self._drain(fd)
                    return
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"farserver did not start: {seen.decode(errors='replace')}")

    @staticmethod
    def _drain(fd: int) -> None:
        """Keep reading its stderr in the background so it never blocks on a full pipe."""
        import threading

        def drain() -> None:
            try:
                while os.read(fd, 65536):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()

    def pause(self) -> None:
        """Stall the node (SIGSTOP): it holds connections but answers nothing."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Kill the node abruptly (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int | None:
        """Stop the node by its PID (SIGTERM, then SIGKILL); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode
