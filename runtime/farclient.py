"""Pipelined connection to a far-memory node: request ids, coalesced writes,
timeouts, reconnection, and the data structures constructed on the node.

    green thread --call()--> frame --+          +--> FrameReader --> reply
    evacuator --submit(cb)--> frame -+-> one transport.write per loop tick
                                     |   (many frames coalesced)
    outstanding: req_id -> (callback, deadline), in deadline order

- Many requests are in flight at once on one connection; replies come back
  in any order and are matched by req_id. Frames submitted during one loop
  tick go out in one transport.write.
- `call()` parks only the calling green thread (may park); `submit()` never
  parks and runs its callback in the hub. A request not answered within
  `timeout` seconds fails with FarTimeout (checked by one periodic timer,
  not one timer per request); a late reply is dropped.
- While the node is down, requests fail at once with FarUnavailable (no
  parking, no queueing) and the client reconnects in the background with
  exponential backoff (50 ms doubling to 2 s).
- HELLO with the shared secret opens every connection. Data structures are
  registered once (`register`) and constructed on every node the client
  reaches; when the node turns out to be a new instance (its HELLO name
  differs), every owner's `on_far_reset()` is told that far copies are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from protocol.far import (
    VERSION,
    FrameError,
    FrameReader,
    Op,
    Status,
    decode_construct_reply,
    decode_hello_reply,
    decode_message,
    decode_stats_reply,
    encode_construct,
    encode_frame,
    encode_hello,
)
from runtime import hub as _hub
from runtime.errors import FarTimeout, FarUnavailable

__all__ = ["FarClient", "FarStructure"]

log = logging.getLogger("runtime.farclient")

Callback = Callable[[Any, Any], None]  # (status | None, body | exception)


class FarStructure:
    """A data structure registered with the client: its id on the current node."""

    __slots__ = ("kind", "params", "owner", "ds")

    def __init__(self, kind: int, params: dict, owner: Any):
        self.kind = kind  # protocol.far.DsType
        self.params = params  # CONSTRUCT parameters
        self.owner = owner  # told on_far_reset() when the node is new
        self.ds = 0  # id on the node; 0 until constructed


class _Protocol(asyncio.Protocol):
    def __init__(self, client: FarClient):
        self.client = client
        self.reader = FrameReader(replies=True)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        deliver = self.client._deliver
        try:
            while True:
                frame = reader.next()
                if frame is None:
                    return
                deliver(frame)
        except FrameError as exc:
            log.error("far node sent a malformed frame: %s; reconnecting", exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self, exc)


class FarClient:
    """One pipelined connection to a far node, reconnecting as needed."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes = b"",
        timeout: float = 2.0,
        hub: _hub.Hub | None = None,
    ):
        self.host = host
        self.port = port
        self.secret = secret
        self.timeout = timeout  # seconds a request may wait for its reply
        self.hub = hub or _hub.get_hub()
        self.available = False  # connected, authenticated, structures built
        self.node_name = ""  # the node's HELLO name (changes on restart)
        self.structures: list[FarStructure] = []
        self._proto: _Protocol | None = None
        self._outstanding: dict[int, tuple[Callback, float]] = {}
        self._next_id = 1
        self._wbuf: list[bytes] = []
        self._flush_pending = False
        self.closed = False  # close() was called: no more connecting
        self._backoff = 0.05
        self._ready_waiters: list[_hub.Waiter] = []
        self._connecting: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        # stats
        self.requests = 0
        self.timeouts = 0
        self.failures = 0  # requests failed because the node was down or lost
        self.reconnects = 0
        self.resets = 0  # new node instances seen

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background (hub or green thread). Never parks."""
        if self._connecting is None and not self.available and not self.closed:
            self._connecting = self.hub.loop.create_task(self._connect_loop())
        if self._timer is None:
            self._schedule_timer()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Park until connected (True) or `timeout` passes (False). May park."""
        self.start()
        if self.available:
            return True
        w = _hub.Waiter(self.hub)
        self._ready_waiters.append(w)
        try:
            w.get(timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if w in self._ready_waiters:
                self._ready_waiters.remove(w)

    def close(self) -> None:
        """Drop the connection, fail outstanding requests, stop reconnecting."""
        self.closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._fail_all(FarUnavailable("far client closed"))
        self.available = False

    def register(self, kind: int, params: dict, owner: Any) -> FarStructure:
        """A data structure to construct on every node reached.

        From a green thread with the node up, parks until it is constructed;
        otherwise construction happens in the background (or on connect).
        """
        st = FarStructure(kind, params, owner)
        self.structures.append(st)
        if self.available:
            if self.hub.in_hub():
                self.submit(
                    Op.CONSTRUCT,
                    0,
                    encode_construct(kind, params),
                    lambda s, b: self._built(st, s, b),
                )
            else:
                self.construct(st)
        return st

    def construct(self, st: FarStructure) -> int:
        """Construct `st` on the node now if it has no id yet; its id. May park."""
        if not st.ds:
            status, body = self.call(Op.CONSTRUCT, 0, encode_construct(st.kind, st.params))
            if status != Status.OK:
                raise FarUnavailable(f"far node refused CONSTRUCT: {decode_message(body)}")
            if not st.ds:
                st.ds = decode_construct_reply(body)
        return st.ds

    def _built(self, st: FarStructure, status: Any, body: Any) -> None:
        if status == Status.OK:
            if not st.ds:
                st.ds = decode_construct_reply(body)
        else:
            log.error("far node refused to construct %s: %r", st.params, body)

    # -- requests ------------------------------------------------------------

    def submit(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        """Send a request; `callback(status, body)` runs in the hub. Never parks.

        On failure the callback gets (None, exception): FarUnavailable at once
        when the node is down, FarTimeout when no reply came in time.
        """
        if not self.available or self._proto is None:
            self.failures += 1
            callback(None, FarUnavailable(f"far node {self.host}:{self.port} unavailable"))
            return
        self._send(op, ds, body, callback)

    def _send(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        self._outstanding[rid] = (callback, time.monotonic() + self.timeout)
        self.requests += 1
        self._wbuf.append(encode_frame(rid, op, ds, body))
        if not self._flush_pending:
            self._flush_pending = True
            self.hub.loop.call_soon(self._flush)

    def call(self, op: int, ds: int, body: bytes) -> tuple[int, bytes]:
        """Send a request and park until its reply: (status, body). May park.

        Raises FarUnavailable or FarTimeout.
        """
        _hub.check_can_park()
        w = _hub.Waiter(self.hub)

        def reply(status: Any, rbody: Any) -> None:
            if status is None:
                w.throw(rbody)
            else:
                w.switch((status, rbody))

        self.submit(op, ds, body, reply)
        return w.get()

    def stats_call(self) -> dict:
        """The node's STATS, as a dict. May park."""
        status, body = self.call(Op.STATS, 0, b"")
        return decode_stats_reply(body) if status == Status.OK else {}

    def stats(self) -> dict[str, int]:
        """Client-side counters."""
        return {
            "far_requests": self.requests,
            "far_timeouts": self.timeouts,
            "far_failures": self.failures,
            "far_reconnects": self.reconnects,
            "far_resets": self.resets,
            "far_outstanding": len(self._outstanding),
            "far_available": int(self.available),
        }

    # -- internals -----------------------------------------------------------

    def _flush(self) -> None:
        self._flush_pending = False
        buf, self._wbuf = self._wbuf, []
        proto = self._proto
        if buf and proto is not None and proto.transport is not None:
            proto.transport.write(b"".join(buf))

    def _deliver(self, frame: Any) -> None:
        entry = self._outstanding.pop(frame.req_id, None)
        if entry is None:
            return  # timed out already: a late reply
        entry[0](frame.status, frame.body)

    def _schedule_timer(self) -> None:
        period = max(0.01, min(self.timeout / 4, 0.25))
        self._timer = self.hub.loop.call_later(period, self._check_timeouts)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        out = self._outstanding
        expired = []
        for rid, (_cb, deadline) in out.items():  # insertion order = deadline order
            if deadline > now:
                break
            expired.append(rid)
        for rid in expired:
            cb, _ = out.pop(rid)
            self.timeouts += 1
            try:
                cb(None, FarTimeout(f"far node gave no reply in {self.timeout} s"))
            except Exception:
                log.exception("far request callback failed")
        if not self.closed:
            self._schedule_timer()

    def _fail_all(self, exc: Exception) -> None:
        out, self._outstanding = self._outstanding, {}
        self._wbuf = []
        for cb, _ in out.values():
            self.failures += 1
            try:
                cb(None, exc)
            except Exception:
                log.exception("far request callback failed")

    def _lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        was = self.available
        self.available = False
        self._fail_all(FarUnavailable(f"lost far node {self.host}:{self.port}: {exc}"))
        if was:
            log.warning("lost far node %s:%d; reconnecting", self.host, self.port)
        if not self.closed and self._connecting is None:
            self._connecting = self.hub.loop.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        loop = self.hub.loop
        try:
            while not self.closed:
                try:
                    await self._connect_once()
                    self._backoff = 0.05
                    return
                except (TimeoutError, OSError, FarUnavailable, FrameError) as exc:
                    # a refusal (wrong secret, bad frames) is worth saying; a node not up yet is not
                    level = logging.DEBUG if isinstance(exc, OSError) else logging.WARNING
                    log.log(level, "far connect to %s:%d failed: %s", self.host, self.port, exc)
                    if self._proto is not None and self._proto.transport is not None:
                        self._proto.transport.close()
                    self._proto = None
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, 2.0)
        finally:
            self._connecting = None
            del loop

    async def _connect_once(self) -> None:
        loop = self.hub.loop
        _t, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout
        )
        self._proto = proto
        status, body = await self._request(Op.HELLO, 0, encode_hello(VERSION, self.secret))
        if status != Status.OK:
            raise FarUnavailable(f"far node refused HELLO: {decode_message(body)}")
        _version, name = decode_hello_reply(body)
        new_node = name != self.node_name
        for st in self.structures:
            if new_node or not st.ds:
                status, body = await self._request(
                    Op.CONSTRUCT, 0, encode_construct(st.kind, st.params)
                )
                if status != Status.OK:
                    raise FarUnavailable(f"far node refused CONSTRUCT: {decode_message(body)}")
                st.ds = decode_construct_reply(body)
        if new_node and self.node_name:
            self.resets += 1
            log.warning("far node %s is a new instance: far copies are gone", name)
            for st in self.structures:
                reset = getattr(st.owner, "on_far_reset", None)
                if reset is not None:
                    reset()
        if self.node_name:
            self.reconnects += 1
        self.node_name = name
        self.available = True
        log.info("connected to far node %s at %s:%d", name, self.host, self.port)
        waiters, self._ready_waiters = self._ready_waiters, []
        for w in waiters:
            w.switch(True)

    def _request(self, op: int, ds: int, body: bytes) -> asyncio.Future:
        fut = self.hub.loop.create_future()

        def done(status: Any, rbody: Any) -> None:
            if fut.done():
                return
            if status is None:
                fut.set_exception(rbody)
            else:
                fut.set_result((status, rbody))

        self._send(op, ds, body, done)
        return fut
