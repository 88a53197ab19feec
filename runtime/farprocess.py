"""A far-memory node as a child process (`python -m farserver`), and its supervisor.

Used where a far node must simply exist: kvcache without `--far` starts one
of its own on an ephemeral loopback port (DESIGN §7), and tests and
benchmarks start real nodes with it. The child prints
`farserver listening on HOST:PORT`; the port is read from that line. A
small thread drains the child's stderr (so it never blocks on a full pipe),
keeps its last lines, and reaps the child when it exits. The process is
stopped by its PID: SIGTERM, then SIGKILL after a grace period. Starting it
again reuses the same port.

The child never outlives its parent: it gets the read end of a pipe (its
*lifeline*, `farserver --parent-fd N`) whose write end only the parent
holds; when the parent exits, however it exits (kill -9 included), the
kernel closes that end and the child stops itself. The child runs in a
session of its own, so a terminal's Ctrl-C reaches only the parent, which
then stops the child in order.

`NodeSupervisor` keeps an embedded node running: when the child dies it is
reaped at once, restarted after a backoff (0.1 s doubling to 10 s, back to
0.1 s once a child has lived 30 s), on the same port if it can still be had,
and the far client is pointed at it and told to reconnect now.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FarProcess", "NodeSupervisor", "describe_exit"]

log = logging.getLogger("runtime.farprocess")

_LISTENING = re.compile(rb"^farserver listening on ([0-9.]+):(\d+)$")
KEEP_LINES = 200  # stderr lines kept per child


def describe_exit(returncode: int | None) -> str:
    """'exit status 1', 'killed by SIGKILL' or 'still running'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


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
        start: bool = True,
    ):
        self.host = host
        self.port = port  # 0: ephemeral, learnt from the startup line
        self.args = list(args)  # extra farserver arguments
        if memory_mb is not None:
            self.args += ["-m", str(memory_mb)]
        if secret_file is not None:
            self.args += ["--secret-file", secret_file]
        self.timeout = timeout  # seconds to wait for the startup line
        self.lines: collections.deque[bytes] = collections.deque(maxlen=KEEP_LINES)
        self.proc: subprocess.Popen | None = None
        # called from the drain thread: (proc, port) once it listens, (proc, status) at exit
        self.on_listening: Callable[[subprocess.Popen, int], None] | None = None
        self.on_exit: Callable[[subprocess.Popen, int], None] | None = None
        self._lifeline: int | None = None  # write end of the child's parent-death pipe
        self._terminated = False
        if start:
            self.start()

    @property
    def pid(self) -> int:
        """The child's PID."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, started: threading.Event | None = None) -> subprocess.Popen:
        """Start the child and return at once; on_listening/on_exit report what follows.

        `started` is set once this child listens or exits, whichever comes first.
        """
        self._close_lifeline()
        rfd, wfd = os.pipe()  # both ends non-inheritable; the child gets rfd explicitly
        cmd = [sys.executable, "-m", "farserver", "-l", self.host, "-p", str(self.port)]
        try:
            proc = subprocess.Popen(
                cmd + ["--parent-fd", str(rfd)] + self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(rfd,),
                start_new_session=True,  # a terminal's Ctrl-C is for the parent only
            )
        except BaseException:
            os.close(wfd)
            raise
        finally:
            os.close(rfd)
        self._lifeline = wfd
        self.proc = proc
        self._terminated = False
        threading.Thread(target=self._drain, args=(proc, started), daemon=True).start()
        return proc

    def start(self) -> None:
        """Start the child (again after stop(), on the same port) and wait until it listens."""
        started = threading.Event()
        proc = self.spawn(started)
        if not started.wait(self.timeout) or proc.poll() is not None:
            self.stop()
            tail = b"\n".join(list(self.lines)[-5:]).decode(errors="replace")
            raise RuntimeError(f"farserver did not start: {tail}")

    def _drain(self, proc: subprocess.Popen, started: threading.Event | None) -> None:
        assert proc.stderr is not None
        listening = False
        for raw in proc.stderr:
            line = raw.rstrip(b"\n")
            self.lines.append(line)
            m = _LISTENING.match(line)
            if m and not listening:
                listening = True
                self.port = int(m.group(2))
                if started is not None:
                    started.set()
                cb = self.on_listening
                if cb is not None:
                    cb(proc, self.port)
        status = proc.wait()  # reaps it: never a zombie
        if started is not None:
            started.set()
        cb = self.on_exit
        if cb is not None:
            cb(proc, status)

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
        self._close_lifeline()
        return self.proc.returncode

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def __enter__(self) -> FarProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeSupervisor:
    """Restarts an embedded FarProcess whenever it dies, with backoff (hub)."""

    FIRST_DELAY = 0.1  # seconds before the first restart
    MAX_DELAY = 10.0  # the backoff's ceiling
    STABLE = 30.0  # a child that lived this long resets the backoff

    def __init__(self, node: FarProcess, loop: Any, far: Any = None):
        self.node = node
        self.loop = loop
        self.far = far  # the FarClient to point at a restarted node (host, port, kick)
        self.restarts = 0  # children restarted after one died
        self.deaths = 0  # children that died (including restarts that failed)
        self.last_exit = ""  # how the last one died
        self.stopping = False
        self._delay = self.FIRST_DELAY
        self._started_at = time.monotonic()
        self._timer: Any = None
        self._was_listening = True  # the child that died had been listening
        node.on_exit = self._from_thread(self._exited)
        node.on_listening = self._from_thread(self._listening)

    def _from_thread(self, fn: Callable[..., None]) -> Callable[..., None]:
        loop = self.loop

        def call(*args: Any) -> None:
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the loop is closed: the cache is exiting

        return call

    def stats(self) -> dict[str, Any]:
        """Supervision counters for `stats far`."""
        return {
            "embedded_pid": self.node.pid if self.node.alive() else 0,
            "embedded_restarts": self.restarts,
            "embedded_deaths": self.deaths,
        }

    def stop(self) -> None:
        """Stop supervising and stop the child (SIGTERM, then SIGKILL)."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.node.on_exit = self.node.on_listening = None
        self.node.stop()

    def _exited(self, proc: Any, status: int) -> None:
        if self.stopping or proc is not self.node.proc:
            return
        self.deaths += 1
        self.last_exit = describe_exit(status)
        if time.monotonic() - self._started_at >= self.STABLE:
            self._delay = self.FIRST_DELAY
        delay = self._delay
        self._delay = min(self._delay * 2, self.MAX_DELAY)
        if not self._was_listening:
            self.node.port = 0  # it could not listen there: take any port next time
        log.warning(
            "embedded far node (pid %d) died (%s); restarting it in %.1f s",
            proc.pid,
            self.last_exit,
            delay,
        )
        self._timer = self.loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        self._timer = None
        if self.stopping:
            return
        self._started_at = time.monotonic()
        self._was_listening = False
        try:
            self.node.spawn()
        except OSError as exc:
            log.warning("embedded far node could not be started: %s", exc)
            self._exited(self.node.proc, -1)

    def _listening(self, proc: Any, port: int) -> None:
        if self.stopping or proc is not self.node.proc:
            return
        self._was_listening = True
        if self.deaths:
            self.restarts += 1
            log.warning(
                "embedded far node restarted (pid %d) on %s:%d", proc.pid, self.node.host, port
            )
        far = self.far
        if far is not None:
            far.port = port
            far.kick()
