"""The memcached server: connections on the hub, requests through the dispatcher.

    data_received (hub) -> parser.feed -> for each event: dispatcher handler
        completes locally -> reply appended; no greenlet switch at all
        raises WouldPark  -> (nothing changed) a pooled greenlet takes the
                             connection over from that request until the
                             parser runs dry, parking as it needs to
    replies of one batch -> one transport.write

When a greenlet takes a connection over, it first parses every request
already buffered and starts the far reads of all their get keys (the
request stream is the prefetch hint, DESIGN §2): N pipelined far gets then
cost about one round trip, not N.

A connection's requests run in order and its replies go out in order; while
a greenlet owns a connection, newly read bytes just wait in its parser.
Scaling past one core is several processes (DESIGN §2), never threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import cython

from kvcache.dispatcher import Dispatcher
from kvcache.errors import reply_for
from protocol import ProtocolError
from protocol.memcache import NEED_DATA
from protocol.memcache.parser import Parser
from runtime import hub as _hub
from runtime.errors import WouldPark
from runtime.scope import DerefScope

__all__ = ["Connection", "Listener"]

log = logging.getLogger("kvcache.server")

TOO_MANY = b"ERROR Too many open connections\r\n"
PREFETCH_AHEAD = 256  # requests parsed ahead for prefetching when a greenlet takes over
PIN_FLUSH = 32  # a greenlet writes its replies out once they pin this many objects
READ_AHEAD = 1 << 20  # bytes a parked connection may buffer (+ one item) before reads pause
_GETS = frozenset(("get", "gets", "gat", "gats", "mg"))
_FAR_GETS = frozenset(("get", "gets"))  # finished by callback in the hub when they go far


class Listener:
    """Connection bookkeeping for one listening server."""

    def __init__(self, dispatcher: Any, hub: _hub.Hub, max_connections: int, item_size_max: int):
        self.dispatcher = dispatcher
        self.hub = hub
        self.max_connections = max_connections
        self.item_size_max = item_size_max
        self.connections: set[Connection] = set()
        self.total_connections = 0
        self.rejected_connections = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.takeovers = 0  # requests that had to move into a pooled greenlet
        self.far_gets = 0  # gets that went far and were finished by callback, in the hub
        self.binary_rejected = 0  # connections closed for speaking the binary protocol
        self.server: asyncio.AbstractServer | None = None

    def stats(self) -> list[tuple[str, Any]]:
        """Connection and traffic counters for `stats`."""
        return [
            ("max_connections", self.max_connections),
            ("curr_connections", len(self.connections)),
            ("total_connections", self.total_connections),
            ("rejected_connections", self.rejected_connections),
            ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written),
            ("greenlet_takeovers", self.takeovers),
            ("far_gets_in_hub", self.far_gets),
            ("greenlets_created", self.hub.created),
            ("binary_protocol_rejected", self.binary_rejected),
        ]

    def protocol(self) -> Connection:
        """asyncio protocol factory."""
        return Connection(self)

    def busy(self) -> int:
        """Connections with a request in progress (a greenlet owns them)."""
        return sum(1 for c in self.connections if c.owned)


class Connection:
    """One client connection (an asyncio protocol; a C class when compiled)."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.dispatcher = listener.dispatcher
        self.handlers = listener.dispatcher.handlers
        self.parser = Parser(item_size_max=listener.item_size_max)
        self.transport: asyncio.Transport | None = None
        self._write: Any = None  # transport.write and transport.is_closing, bound
        self._is_closing: Any = None
        self.owned = False  # a pooled greenlet is running this connection's requests
        self.closing = False
        self.ahead: deque = deque()  # parsed ahead (events or ProtocolErrors), run first
        self.read_paused = False  # a parked connection buffered enough: reads wait
        self.write_paused = False  # the client is not reading its replies: reads wait
        self.read_limit = READ_AHEAD + listener.item_size_max
        self._out: list = []  # the hub's batch of replies, reused
        self._scope = DerefScope()  # the hub's scope, reused
        self._on_far = self._far_landed  # bound once: every far get passes it

    def eof_received(self) -> bool | None:
        """The client closed its side: close ours (asyncio.Protocol's default)."""
        return None

    # -- asyncio callbacks (hub) -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # bound once: each reply batch then calls them with no method lookup
        self._write = transport.write  # type: ignore[attr-defined]
        self._is_closing = transport.is_closing
        lst = self.listener
        lst.total_connections += 1
        if len(lst.connections) >= lst.max_connections:
            lst.rejected_connections += 1
            transport.write(TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            self.closing = True
            return
        lst.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.listener.connections.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True  # the client is not reading: stop reading it
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reading()

    def _reading(self) -> None:
        """Read from the client unless its replies or its parked requests pile up."""
        if self.transport is None or self.closing:
            return
        if self.read_paused or self.write_paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def data_received(self, data: object) -> None:
        """Bytes from the client: parse and serve them (hub)."""
        if self.closing:
            return
        self.listener.bytes_read += len(data)
        self.parser.feed(data)
        if not self.owned:
            self._serve(in_hub=True)
        elif self.parser.buffered > self.read_limit and self.transport is not None:
            # a client pipelining (noreply sets, say) while its connection is
            # parked: stop reading it until the greenlet is done, or its
            # requests would pile up in memory without bound
            self.read_paused = True
            self._reading()

    # -- request processing ------------------------------------------------------

    def _serve(self, in_hub: cython.bint, first: object = None) -> None:
        """Run every parsed request; in the hub, hand over to a greenlet on WouldPark."""
        parser: Parser = self.parser
        handlers: dict = self.handlers
        dispatcher: Dispatcher = self.dispatcher
        out: list
        scope: DerefScope
        if in_hub:  # the hub runs one batch at a time: its list and scope are reused
            out = self._out
            scope = self._scope
        else:
            out = []
            scope = DerefScope()
        ev = first
        try:
            while not self.closing:
                if ev is None:
                    try:
                        if self.ahead:
                            ev = self.ahead.popleft()
                            if isinstance(ev, ProtocolError):
                                raise ev
                        else:
                            ev = parser.next_event()
                    except ProtocolError as exc:
                        ev = None  # the error was the request: answer it, take the next
                        out.append(reply_for(exc))
                        if exc.close:
                            self._finish(out, scope)
                            self._close()
                            return
                        continue
                    if ev is NEED_DATA:
                        break
                cmd = ev.cmd
                if cmd == "get" and in_hub:  # the hot path: no table lookup, a C call
                    handler = None
                else:
                    handler = handlers.get(cmd)
                    if handler is None:
                        self._special(ev, out, scope)
                        return
                pinned: cython.Py_ssize_t = len(scope._pins)
                if not in_hub and pinned and (cmd not in _GETS or pinned >= PIN_FLUSH):
                    # a greenlet may park: never while holding many pins, nor
                    # into an allocation wait while holding any (its own pins
                    # could be what the evacuator needs to free)
                    self._finish(out, scope)
                try:
                    if handler is None:  # a get from the hub: resident, else far by callback
                        if not dispatcher._get_resident(ev, out):
                            if dispatcher.start_far_get(ev, self._on_far):
                                self._went_far(out, scope)
                                return
                            dispatcher.get(ev, scope, out)  # nothing far: never parks
                    else:
                        handler(ev, scope, out)
                except WouldPark:
                    if not in_hub:
                        raise
                    self._finish(out, scope)
                    self.owned = True
                    if cmd in _FAR_GETS and dispatcher.start_far_get(ev, self._on_far):
                        self._went_far(out, scope)
                        return
                    self.listener.takeovers += 1
                    self.listener.hub.run_in_pool(self._serve_parked, ev)
                    return
                except Exception as exc:
                    line = reply_for(exc)
                    if line is None:
                        log.exception("bug serving %.300r; closing the connection", ev)
                        self._finish(out, scope)
                        self._close()
                        return
                    out.append(line)
                if cmd == "quit":
                    self._finish(out, scope)
                    self._close()
                    return
                ev = None
        finally:
            if out:
                self._finish(out, scope)
            else:
                scope.release()

    def _serve_parked(self, ev: Any) -> None:
        """The greenlet side: the same loop, allowed to park."""
        try:
            self._prefetch_ahead()
            self._serve(in_hub=False, first=ev)
        finally:
            self.owned = False
        if self.read_paused:
            self.read_paused = False
            self._reading()
        if not self.closing and self.parser.buffered:
            self.listener.hub.schedule(self._resume)  # bytes arrived while we worked

    def _went_far(self, out: list, scope: DerefScope) -> None:
        """A get's far reads are out: earlier replies go, the connection waits owned (hub)."""
        self._finish(out, scope)
        self.owned = True
        self.listener.far_gets += 1  # finished by _far_landed, in the hub
        if not self.closing:
            self._prefetch_ahead()  # the gets behind it go far at once too

    def _far_landed(self, req: Any, fetched: dict, error: Any) -> None:
        """The far reads of a get started from the hub landed: reply, then go on (hub).

        The connection stayed owned meanwhile, so its later requests waited in
        the parser: they are served now, in order, as data_received would.
        """
        out = self._out
        scope = self._scope
        if not self.closing:
            try:
                self.dispatcher.get_landed(req, scope, out, fetched, error)
            except WouldPark:  # a key went far meanwhile: run it again, parked
                self._finish(out, scope)
                self.listener.takeovers += 1
                self.listener.hub.run_in_pool(self._serve_parked, req)
                return
            except Exception:
                log.exception("bug finishing %.300r; closing the connection", req)
                self._close()
        self.owned = False
        self._finish(out, scope)
        if self.read_paused:
            self.read_paused = False
            self._reading()
        if not self.closing and (self.ahead or self.parser.buffered):
            self._serve(True)

    def _prefetch_ahead(self) -> None:
        """Parse the buffered requests now and start the far reads of their get keys."""
        ahead = self.ahead
        parser: Parser = self.parser
        while len(ahead) < PREFETCH_AHEAD:
            try:
                ev = parser.next_event()
            except ProtocolError as exc:
                ahead.append(exc)  # replied to in order, when its turn comes
                if exc.close:
                    break
                continue
            if ev is NEED_DATA:
                break
            ahead.append(ev)
        if not ahead:  # nothing buffered (one request in flight): the usual far get
            return
        keys = [k for ev in ahead if getattr(ev, "cmd", None) in _GETS for k in _keys_of(ev)]
        if keys:
            self.dispatcher.prefetch(keys)

    def _resume(self) -> None:
        if not self.owned and not self.closing:
            self._serve(in_hub=True)

    def _special(self, ev: Any, out: list, scope: DerefScope) -> None:
        """An event that ends the connection: the binary protocol's magic byte."""
        if ev.cmd == "binary":  # memcached speaks it; kvcache does not (one log line each)
            self.listener.binary_rejected += 1
            peer = self.transport.get_extra_info("peername") if self.transport else None
            log.info("closing a binary-protocol connection from %s (unsupported)", peer)
        self._finish(out, scope)
        self._close()

    def _finish(self, out: list, scope: DerefScope) -> None:
        """Write a batch of replies at once, then release the scope its values came from."""
        if out and self._write is not None and not self._is_closing():
            data = out[0]  # one reply, a bytes or bytearray of its own: written as is
            if len(out) > 1 or type(data) is memoryview:  # a view dies with the scope
                data = b"".join(out)
            self.listener.bytes_written += len(data)
            self._write(data)
        out.clear()  # compiled: list.clear called in C, no slice object
        if scope._pins:
            scope.release()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def _keys_of(ev: Any) -> list[bytes]:
    """The keys a get-family request reads."""
    keys = getattr(ev, "keys", None)
    return keys if keys is not None else [ev.key]
