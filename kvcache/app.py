"""Wiring: hub, far node, runtime, table, dispatcher, listener; signals.

Startup prints `kvcache listening on HOST:PORT` (the port is the real one
when -p 0 picks an ephemeral port). SIGTERM/SIGINT: stop accepting, let
in-flight requests finish (up to 5 s), stop the embedded far node, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from kvcache.config import Settings
from kvcache.dispatcher import Dispatcher
from kvcache.server import Listener
from kvcache.stats import FarNodeStats
from runtime import hub as _hub
from runtime.farclient import FarClient
from runtime.farprocess import FarProcess
from runtime.hashtable import RemHashTable
from runtime.manager import Manager

__all__ = ["App"]

log = logging.getLogger("kvcache")


class App:
    """A running kvcache server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.node: FarProcess | None = None
        self.hub = _hub.Hub()
        _hub.set_hub(self.hub)
        asyncio.set_event_loop(self.hub.loop)
        s = settings
        secret = b""
        if s.secret_file:
            with open(s.secret_file, "rb") as f:
                secret = f.read().rstrip(b"\n")
        far = None
        if s.far is None:
            self.node = FarProcess(memory_mb=s.far_memory_mb, secret_file=s.secret_file)
            far = FarClient("127.0.0.1", self.node.port, secret, s.far_timeout, self.hub)
        elif s.far != "none":
            host, _, port = s.far.rpartition(":")
            far = FarClient(host, int(port), secret, s.far_timeout, self.hub)
        self.manager = Manager(s.memory_mb << 20, far, hub=self.hub)
        self.table = RemHashTable(self.manager, nt_threshold=s.nt_threshold)
        self.dispatcher = Dispatcher(
            self.table,
            item_size_max=s.item_size_max,
            on_shutdown=self._shutdown_cmd if s.enable_shutdown else None,
            on_memlimit=self._memlimit,
        )
        self.listener = Listener(self.dispatcher, self.hub, s.max_connections, s.item_size_max)
        self.dispatcher.stats_source = self.listener.stats
        self.dispatcher.settings_source = self._settings
        self.dispatcher.far_stats = FarNodeStats(far) if far is not None else None
        self._stopping = False

    def _settings(self) -> list[tuple[str, object]]:
        s = self.settings
        far = s.far or (f"embedded 127.0.0.1:{self.node.port}" if self.node else "none")
        return [
            ("maxconns", s.max_connections),
            ("port", s.port),
            ("listen", s.listen),
            ("far", far),
        ]

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `shutdown`); the exit status."""
        loop = self.hub.loop
        self.manager.start()
        server = loop.run_until_complete(
            loop.create_server(self.listener.protocol, self.settings.listen, self.settings.port)
        )
        self.listener.server = server
        port = server.sockets[0].getsockname()[1]
        print(f"kvcache listening on {self.settings.listen}:{port}", file=sys.stderr, flush=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            loop.run_forever()
        finally:
            self._cleanup()
        return 0

    def _memlimit(self, mb: int) -> bool:
        """cache_memlimit: resize the local heap (-m) at run time."""
        try:
            self.manager.resize(mb << 20)
        except ValueError:
            return False
        return True

    def _shutdown_cmd(self, graceful: bool) -> None:
        self.hub.schedule(self.stop)

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests, then stop the loop."""
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping")
        if self.listener.server is not None:
            self.listener.server.close()
        deadline = time.monotonic() + 5.0

        def wait() -> None:
            if self.listener.busy() and time.monotonic() < deadline:
                self.hub.loop.call_later(0.01, wait)
                return
            for conn in list(self.listener.connections):
                if conn.transport is not None:
                    conn.transport.close()
            self.hub.loop.call_later(0.05, self.hub.loop.stop)

        wait()

    def _cleanup(self) -> None:
        self.manager.close()
        if self.node is not None:
            self.node.stop()
        loop = self.hub.loop
        try:
            loop.run_until_complete(asyncio.sleep(0))
        except RuntimeError:
            pass
        _hub.set_hub(None)
