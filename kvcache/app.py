"""Wiring: hub, far node, runtime, table, dispatcher, listener; signals.

Startup: bind the listening socket first (a port that cannot be bound is
one line, `kvcache: cannot listen on HOST:PORT: <reason>`, exit status 1,
and no child is ever started), then start the embedded far node (without
--far) and its supervisor, give the far node up to --far-timeout to answer
(cold items evacuated before it does would be dropped), then print `kvcache
listening on HOST:PORT` (the port is the real one when -p 0 picks an
ephemeral port). SIGTERM/SIGINT:
stop accepting, let in-flight requests finish (up to 5 s), close the far
client (quietly: a shutdown is not a lost node), stop the embedded far node,
exit 0. Should kvcache die any other way, the node stops by itself (its
lifeline pipe, runtime.farprocess).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time

from kvcache import compiled
from kvcache.config import Settings, far_nodes
from kvcache.dispatcher import Dispatcher
from kvcache.server import Listener
from kvcache.stats import FarNodeStats
from protocol.tls import TLSError, load_server_files
from runtime import hub as _hub
from runtime.farclient import FarClient
from runtime.farprocess import FarProcess, NodeSupervisor
from runtime.fartier import FarTier
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
        self.supervisor: NodeSupervisor | None = None
        self.port = s.port  # the port actually bound, once run() has bound it
        far = None
        if s.far is None:  # started by run(), once the listening socket is bound
            self.node = FarProcess(
                memory_mb=s.far_memory_mb, secret_file=s.secret_file, start=False
            )
            far = FarClient("127.0.0.1", 0, s.secret, s.far_timeout, self.hub)
        elif s.far != "none":
            nodes = s.far_nodes or far_nodes(s.far)
            if len(nodes) == 1:  # one node: a plain client, no tier in the way
                host, port = nodes[0]
                far = FarClient(host, port, s.secret, s.far_timeout, self.hub, s.far_ssl_context)
            else:  # a tier: placement, replicas, failover
                far = FarTier(
                    nodes,
                    s.far_replicas,
                    s.secret,
                    s.far_timeout,
                    self.hub,
                    ssl_context=s.far_ssl_context,
                    rereplicate_rate=s.far_rereplicate_mb * (1 << 20),
                )
        self.manager = Manager(s.memory_mb << 20, far, hub=self.hub)
        self.table = RemHashTable(self.manager, nt_threshold=s.nt_threshold)
        self.dispatcher = Dispatcher(
            self.table,
            item_size_max=s.item_size_max,
            on_shutdown=self._shutdown_cmd if s.enable_shutdown else None,
            on_memlimit=self._memlimit,
        )
        self.listener = Listener(self.dispatcher, self.hub, s.max_connections, s.item_size_max)
        self.dispatcher.stats_source = self._stats
        self.dispatcher.settings_source = self._settings
        self.dispatcher.far_stats = FarNodeStats(far) if far is not None else None
        self.dispatcher.supervision_source = self._supervision
        if s.ssl_context is not None:
            self.dispatcher.on_refresh_certs = self._refresh_certs
        self.cert_refreshed = time.monotonic()  # when the TLS certificates were loaded
        self._stopping = False

    def _settings(self) -> list[tuple[str, object]]:
        s = self.settings
        far = s.far or (f"embedded 127.0.0.1:{self.node.port}" if self.node else "none")
        return [
            ("maxconns", s.max_connections),
            ("port", self.port),
            ("listen", s.listen),
            ("backlog", s.listen_backlog),
            ("compiled", "yes" if compiled.compiled() else "no"),
            ("far", far),
            ("ssl_enabled", "yes" if s.ssl_context is not None else "no"),
            ("ssl_chain_cert", s.tls_cert or ""),
            ("ssl_key", s.tls_key or ""),
            ("ssl_ca_cert", s.tls_ca or ""),
            ("ssl_verify_mode", 2 if s.tls_ca else 0),  # memcached's SSL_VERIFY_* numbers
            ("ssl_min_version", "tlsv1.2"),
            ("far_tls", "yes" if s.far_ssl_context is not None else "no"),
            ("far_replicas", s.far_replicas),
            ("far_rereplicate_rate", s.far_rereplicate_mb),
        ]

    def _stats(self) -> list[tuple[str, object]]:
        out = self.listener.stats()
        if self.settings.ssl_context is not None:  # as memcached -Z reports it
            out.append(
                ("time_since_server_cert_refresh", int(time.monotonic() - self.cert_refreshed))
            )
        return out

    def _refresh_certs(self) -> str | None:
        """refresh_certs: reload the certificate files into the listener's context."""
        s = self.settings
        assert s.ssl_context is not None and s.tls_cert and s.tls_key
        try:
            load_server_files(s.ssl_context, s.tls_cert, s.tls_key, s.tls_ca)
        except TLSError as exc:
            log.warning("refresh_certs failed: %s", exc)
            return str(exc)
        self.cert_refreshed = time.monotonic()
        return None

    def _supervision(self) -> dict[str, object]:
        return self.supervisor.stats() if self.supervisor is not None else {}

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `shutdown`); the exit status."""
        loop = self.hub.loop
        s = self.settings
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    self.listener.protocol,
                    s.listen,
                    s.port,
                    backlog=s.listen_backlog,
                    ssl=s.ssl_context,
                )
            )
        except OSError as exc:
            print(f"kvcache: cannot listen on {s.listen}:{s.port}: {_reason(exc)}", file=sys.stderr)
            self._cleanup()
            return 1
        self.listener.server = server
        self.port = server.sockets[0].getsockname()[1]
        try:
            if self.node is not None:
                try:
                    self.node.start()
                except (RuntimeError, OSError) as exc:
                    print(f"kvcache: the embedded far node did not start: {exc}", file=sys.stderr)
                    return 1
                assert self.manager.far is not None
                self.manager.far.port = self.node.port
                self.supervisor = NodeSupervisor(self.node, loop, self.manager.far)
            if not compiled.compiled():
                log.warning(
                    "running uncompiled (pure Python): %s; build with a C compiler for speed",
                    ", ".join(m for m, ok in compiled.status().items() if not ok),
                )
            for ext in compiled.stale():
                log.warning("extension %s is older than its source: rebuild it", ext)
            _tune_gc()
            self.manager.start()
            self._await_far(loop)
            print(f"kvcache listening on {s.listen}:{self.port}", file=sys.stderr, flush=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.run_forever()
        finally:
            self._cleanup()
        return 0

    def _await_far(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the far node up to --far-timeout to answer before serving (it warns if not)."""
        far = self.manager.far
        if far is None:
            return
        deadline = time.monotonic() + self.settings.far_timeout
        while not far.available and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.005))

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
        if self.manager.far is not None:
            for client in self.manager.far.nodes():
                client.closing = True  # what happens to the nodes from now on is ours
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
        if self.supervisor is not None:
            self.supervisor.stop()
        elif self.node is not None:
            self.node.stop()
        if self.listener.server is not None:
            self.listener.server.close()
        loop = self.hub.loop
        try:
            loop.run_until_complete(asyncio.sleep(0))
        except RuntimeError:
            pass
        _hub.set_hub(None)


GC_THRESHOLD = (50_000, 20, 20)  # container allocations between young collections, etc.


def _tune_gc() -> None:
    """Collect less often: requests allocate many short-lived containers and no cycles.

    Everything built at startup (modules, tables, the hub) is frozen out of
    the collector's view, and a young collection runs every 50,000 container
    allocations instead of CPython's 700: at ~10 per far hit, the default
    made the collector a few percent of the far path's CPU.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _reason(exc: OSError) -> str:
    """`address already in use`: the OS's words for an error, lower-cased."""
    text = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
    return text[:1].lower() + text[1:]
