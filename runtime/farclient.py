# cython: annotation_typing=False
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
  exponential backoff (50 ms doubling to 2 s; `kick()` retries at once, as
  when a supervised node has been restarted).
- A node that keeps its connection but stops answering (SIGSTOP, a hung
  host, a cut link) is *stalled* when a request times out with no reply at
  all since it was sent (so within one timeout, even for a lone request), or
  after STALL_TIMEOUTS requests time out in a row with no reply between them
  (slow answers to others): it is then treated as down (outstanding requests fail,
  new ones fail at once) while a PING probes it every PROBE_PERIOD; its
  first answer takes it back. Replies come in order on the one connection,
  so by then every request sent before the stall has been dealt with.
- The log says, at WARNING, when the node is lost, stalled, unreachable (at
  once, then every WARN_PERIOD while it stays so) and when it is back.
- HELLO with the shared secret opens every connection. Data structures are
  registered once (`register`) and constructed on every node the client
  reaches; when the node turns out to be a new instance (its HELLO name
  differs), every owner's `on_far_reset()` is told that far copies are gone.
- A client that is one node of a tier (runtime/fartier.py) has
  `clear_on_return`: a node that comes back after being down or stalled, new
  instance or the same one after a partition, is trusted for nothing it
  held. Its structures are destructed and constructed again before it is
  used, and owners hear `on_far_cleared()` instead of `on_far_reset()`. A
  stalled node that answers again rejoins through a reconnect, so the same
  path clears it.
- The interface the data structures use is the one a FarTier presents too:
  `submit_named`/`call_named` (a request about one object, by its far name:
  a tier places it; here the name is not needed), `broadcast` (every node),
  `nodes()`, `members(st)` (per node: the client and its structure),
  `replica_count()`, `first_replica()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import cython

from protocol.far import (
    VERSION,
    FrameError,
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
from protocol.far.frames import FrameReader
from runtime import hub as _hub
from runtime.errors import FarMemoryError, FarTimeout, FarUnavailable

if cython.compiled:
    from cython.cimports.posix.time import CLOCK_MONOTONIC, clock_gettime, timespec

__all__ = ["FarClient", "FarReply", "FarStructure"]

log = logging.getLogger("runtime.farclient")

STALL_TIMEOUTS = 3  # requests timed out in a row, no reply between: the node is stalled
PROBE_PERIOD = 0.25  # seconds between PINGs to a stalled node (at most the timeout)
WARN_PERIOD = 30.0  # seconds between "still unreachable" warnings

Callback = Callable[[Any, Any], None]  # (status | None, body | exception)


def _monotonic() -> float:
    """time.monotonic(): the same clock (CLOCK_MONOTONIC), read in C when compiled."""
    if cython.compiled:
        ts = cython.declare(timespec)
        clock_gettime(CLOCK_MONOTONIC, cython.address(ts))
        return ts.tv_sec + ts.tv_nsec * 1e-9
    return time.monotonic()


class FarReply:
    """A reply callback as an object: `done(status, body)`, as a Callback is called.

    The hot callers (a far read's _Fetch, a write-back's _Ack) subclass it:
    compiled, the client reaches `done` by a C call, not through Python's
    call protocol. Any other callable works as a Callback too.
    """

    def done(self, status: Any, body: Any) -> None:
        """The reply: (status, body), or (None, the exception)."""
        raise NotImplementedError

    def __call__(self, status: Any, body: Any) -> None:
        self.done(status, body)


class FarStructure:
    """A data structure registered with the client: its id on the current node."""

    __slots__ = ("kind", "params", "owner", "ds")

    def __init__(self, kind: int, params: dict, owner: Any):
        self.kind = kind  # protocol.far.DsType
        self.params = params  # CONSTRUCT parameters
        self.owner = owner  # told on_far_reset() when the node is new
        self.ds = 0  # id on the node; 0 until constructed


class _Protocol:
    """The far connection's asyncio protocol (a C class when compiled)."""

    def __init__(self, client: FarClient):
        self.client = client
        self.reader = FrameReader(replies=True)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is up."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Replies: delivered to their callbacks by request id (hub)."""
        reader = cython.declare(FrameReader, self.reader)  # C calls, no Frame objects
        reader.feed(data)
        client = cython.declare(FarClient, self.client)
        client.bytes_received += len(data)
        try:
            while reader._advance():
                client._deliver(reader.req_id, reader.status, reader.body)
        except FrameError as exc:
            log.error("far node sent a malformed frame: %s; reconnecting", exc)
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        """The node closed its side: close ours."""
        return None

    def pause_writing(self) -> None:
        """The node reads slowly: requests keep queueing in the transport (bounded by
        the callers' own limits: outstanding reads are at most a request's keys)."""

    def resume_writing(self) -> None:
        """The node reads again."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: fail what was outstanding, reconnect."""
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
        ssl_context: Any = None,
    ):
        self.host = host
        self.port = port
        self.secret = secret
        self.ssl_context = ssl_context  # TLS to the node (protocol.tls.client_context); None: TCP
        self.timeout = timeout  # seconds a request may wait for its reply
        self.hub = hub or _hub.get_hub()
        self.available = False  # connected, authenticated, structures built
        self.node_name = ""  # the node's HELLO name (changes on restart)
        self.structures: list[FarStructure] = []
        self._proto: _Protocol | None = None
        self._outstanding: dict[int, tuple[Callback, float, int]] = {}  # cb, deadline, replies
        self._next_id = 1
        self._wbuf: list[bytes] = []
        self._flush_pending = False
        self._call_soon = self.hub.loop.call_soon  # bound once: _send schedules a flush per turn
        self._flush_cb = self._flush
        self.closed = False  # close() was called: no more connecting
        self.closing = False  # the owner is shutting down: losing the node is not news
        self._backoff = 0.05
        self._ready_waiters: list[_hub.Waiter] = []
        self._connecting: asyncio.Task | None = None
        self._kick: asyncio.Future | None = None  # the reconnect loop's backoff sleep
        self._timer: asyncio.TimerHandle | None = None
        self._probe: asyncio.TimerHandle | None = None
        self.stalled = False  # connected, but it stopped answering: treated as down
        self._timeouts_in_row = 0  # timeouts since the last reply
        self._replies = 0  # replies received on any connection (a request notes the count)
        self._down_since: float | None = time.monotonic()  # None while available
        self._warned_at = 0.0  # monotonic time of the last "unreachable" warning
        self._attempts = 0  # connection attempts since the node went down
        self.connected_once = False
        self.clear_on_return = False  # a tier's node: cleared whenever it comes back
        # stats
        self.requests = 0
        self.timeouts = 0
        self.failures = 0  # requests failed because the node was down or lost
        self.reconnects = 0
        self.resets = 0  # new node instances seen
        self.clears = 0  # returns after which the node's structures were cleared
        self.stalls = 0  # times the node was declared stalled
        self.downtime = 0.0  # seconds unavailable, over past outages
        self.bytes_sent = 0  # frame bytes written to the node, headers included
        self.bytes_received = 0  # frame bytes read from it

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

    def kick(self) -> None:
        """Retry a down node now, not at the end of the backoff. Never parks."""
        self._backoff = 0.05
        if self._kick is not None and not self._kick.done():
            self._kick.set_result(None)

    def close(self) -> None:
        """Drop the connection, fail outstanding requests, stop reconnecting (silently)."""
        self.closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        for handle in (self._timer, self._probe):
            if handle is not None:
                handle.cancel()
        self._timer = self._probe = None
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self.available = False
        exc = FarUnavailable("far client closed")
        if self.hub.in_hub():
            self._fail_all(exc)
        else:  # callbacks resume green threads: only the hub may
            self.hub.schedule(self._fail_all, exc)

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

    def submit_named(self, op: int, ds: int, name: bytes, body: bytes, callback: Callback) -> None:
        """submit() of a request about the object `name` (a tier places it by name).

        One node holds everything: the name is not needed. Never parks.
        """
        self.submit(op, ds, body, callback)

    def broadcast(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        """submit() to every node (here the one). Never parks."""
        self.submit(op, ds, body, callback)

    def nodes(self) -> list:
        """The clients of every node: this one."""
        return [self]

    def members(self, st: FarStructure) -> list:
        """(client, that node's structure) per node, for per-node requests (gone, stats)."""
        return [(self, st)]

    def replica_count(self) -> int:
        """Copies of each far object: 1."""
        return 1

    def first_replica(self, ds: int, name: bytes) -> int:
        """The index (in nodes()) of the node an object is read from first: 0."""
        return 0

    def can_offload(self) -> bool:
        """Whether an object may be changed on the far node (COMPUTE): one node, one copy."""
        return True

    def reset_connection(self) -> None:
        """Drop the connection (it reconnects; with clear_on_return, cleared). Never parks."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    def _send(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        self._outstanding[rid] = (callback, _monotonic() + self.timeout, self._replies)
        self.requests += 1
        self._wbuf.append(encode_frame(rid, op, ds, body))
        if not self._flush_pending:
            self._flush_pending = True
            self._call_soon(self._flush_cb)

    def call(self, op: int, ds: int, body: bytes) -> tuple[int, bytes]:
        """Send a request and park until its reply: (status, body). May park.

        Raises FarUnavailable or FarTimeout.
        """
        return self._park_for_reply(lambda reply: self.submit(op, ds, body, reply))

    def call_named(self, op: int, ds: int, name: bytes, body: bytes) -> tuple[int, bytes]:
        """call() of a request about the object `name` (see submit_named). May park."""
        return self._park_for_reply(lambda reply: self.submit_named(op, ds, name, body, reply))

    def _park_for_reply(self, send: Callable[[Callback], None]) -> tuple[int, bytes]:
        """send(callback), then park until the callback runs: (status, body). May park."""
        _hub.check_can_park()
        w = _hub.Waiter(self.hub)

        def reply(status: Any, rbody: Any) -> None:
            if status is None:
                w.throw(rbody)
            else:
                w.switch((status, rbody))

        send(reply)
        return w.get()

    def stats_call(self) -> dict:
        """The node's STATS, as a dict. May park."""
        status, body = self.call(Op.STATS, 0, b"")
        return decode_stats_reply(body) if status == Status.OK else {}

    @property
    def state(self) -> str:
        """up, stalled, or down."""
        return "up" if self.available else "stalled" if self.stalled else "down"

    def down_seconds(self) -> float:
        """Seconds the node has been unavailable (0 while it is up)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def stats(self) -> dict[str, Any]:
        """Client-side counters."""
        return {
            "far_requests": self.requests,
            "far_timeouts": self.timeouts,
            "far_failures": self.failures,
            "far_reconnects": self.reconnects,
            "far_resets": self.resets,
            "far_clears": self.clears,
            "far_stalls": self.stalls,
            "far_outstanding": len(self._outstanding),
            "far_available": int(self.available),
            "far_state": self.state,
            "far_down_seconds": round(self.downtime + self.down_seconds(), 3),
            "far_bytes_sent": self.bytes_sent,
            "far_bytes_received": self.bytes_received,
            "far_nodes": 1,
            "far_replicas": 1,
            "far_failovers": 0,
        }

    # -- internals -----------------------------------------------------------

    def _flush(self) -> None:
        self._flush_pending = False
        buf, self._wbuf = self._wbuf, []
        proto = self._proto
        if buf and proto is not None and proto.transport is not None:
            data = b"".join(buf)
            self.bytes_sent += len(data)
            proto.transport.write(data)

    @cython.locals(reply=FarReply)
    def _deliver(self, req_id: int, status: int, body: bytes) -> None:
        """A reply: its request's callback gets (status, body) (hub)."""
        self._timeouts_in_row = 0  # it answers (even late): not stalled
        self._replies += 1
        entry = self._outstanding.pop(req_id, None)
        if entry is None:
            return  # timed out already: a late reply
        cb = entry[0]
        if isinstance(cb, FarReply):
            reply: FarReply = cb
            reply.done(status, body)
        else:
            cb(status, body)

    def _schedule_timer(self) -> None:
        period = max(0.01, min(self.timeout / 4, 0.25))
        self._timer = self.hub.loop.call_later(period, self._check_timeouts)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        out = self._outstanding
        expired = []
        silent = False  # a request timed out with no reply at all since it was sent
        for rid, (_cb, deadline, _seen) in out.items():  # insertion order = deadline order
            if deadline > now:
                break
            expired.append(rid)
        for rid in expired:
            cb, _, seen = out.pop(rid)
            self.timeouts += 1
            self._timeouts_in_row += 1
            if seen == self._replies:
                silent = True
            try:
                cb(None, FarTimeout(f"far node gave no reply in {self.timeout} s"))
            except Exception:
                log.exception("far request callback failed")
        if (silent or self._timeouts_in_row >= STALL_TIMEOUTS) and self.available:
            self._stall()
        if not self.closed:
            self._schedule_timer()

    def _went_down(self) -> None:
        """Bookkeeping for up -> down (lost or stalled)."""
        self.available = False
        self._down_since = time.monotonic()
        self._warned_at = self._down_since
        self._attempts = 0

    def _came_up(self, how: str) -> None:
        """Bookkeeping and the log line for down -> up."""
        down = self.down_seconds()
        self.downtime += down
        self._down_since = None
        self.available = True
        if self.connected_once:
            log.warning("far node %s:%d is back (%s after %.1f s)", self.host, self.port, how, down)
        self.connected_once = True
        for st in self.structures:
            back = getattr(st.owner, "on_far_back", None)
            if back is not None:
                back()
        waiters, self._ready_waiters = self._ready_waiters, []
        for w in waiters:
            w.switch(True)

    def _stall(self) -> None:
        """Too many timeouts in a row: treat the node as down and probe it."""
        self.stalls += 1
        self.stalled = True
        self._went_down()
        log.warning(
            "far node %s:%d stalled: %d requests in a row got no reply in %s s; "
            "serving without it, probing it with PING",
            self.host,
            self.port,
            self._timeouts_in_row,
            self.timeout,
        )
        self._fail_all(FarUnavailable(f"far node {self.host}:{self.port} stalled"))
        self._send_probe()

    def _send_probe(self) -> None:
        """One PING in flight at a time; the next goes out when it failed."""
        self._probe = None
        if self.stalled and not self.closed and self._proto is not None:
            self._send(Op.PING, 0, b"probe", self._probed)

    def _probed(self, status: Any, body: Any) -> None:
        if not self.stalled or self.closed:
            return
        if status is None:  # no answer in time: probe again shortly
            period = min(PROBE_PERIOD, self.timeout)
            self._probe = self.hub.loop.call_later(period, self._send_probe)
            return
        if self.clear_on_return:
            # frames sent before the stall may have been applied late, or not at
            # all: it rejoins through a reconnect, which clears it
            self.reset_connection()
            return
        self.stalled = False
        self._timeouts_in_row = 0
        self._came_up("it answered a PING")

    def _fail_all(self, exc: Exception) -> None:
        out, self._outstanding = self._outstanding, {}
        self._wbuf = []
        for cb, _, _ in out.values():
            self.failures += 1
            try:
                cb(None, exc)
            except Exception:
                log.exception("far request callback failed")

    def _lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        was = self.available or self.stalled
        if self.available:
            self._went_down()
        self.stalled = False
        self._fail_all(FarUnavailable(f"lost far node {self.host}:{self.port}: {exc}"))
        if self.closed:
            return  # our own close(): nothing was lost
        if self.closing:
            was = False  # the owner is shutting down: reconnect, but say nothing
        if was:
            why = f": {exc}" if exc is not None else " (it closed the connection)"
            log.warning("lost far node %s:%d%s; reconnecting", self.host, self.port, why)
        if self._connecting is None:
            self._connecting = self.hub.loop.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        loop = self.hub.loop
        try:
            while not self.closed:
                try:
                    await self._connect_once()
                    self._backoff = 0.05
                    return
                except (TimeoutError, OSError, FarMemoryError, FrameError) as exc:
                    self._attempts += 1
                    self._connect_failed(exc)
                    if self._proto is not None and self._proto.transport is not None:
                        self._proto.transport.close()
                    self._proto = None
                self._kick = loop.create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self._kick), self._backoff)
                except TimeoutError:
                    pass
                finally:
                    self._kick = None
                self._backoff = min(self._backoff * 2, 2.0)
        finally:
            self._connecting = None

    def _connect_failed(self, exc: BaseException) -> None:
        """Log a failed attempt: at once at startup, then every WARN_PERIOD while down."""
        now = time.monotonic()
        first = not self.connected_once and self._attempts == 1
        refused = not isinstance(exc, OSError)  # a wrong secret, bad frames: always worth saying
        if first or refused or now - self._warned_at >= WARN_PERIOD:
            self._warned_at = now
            if first:
                what = "far memory is off until it answers"
            else:
                what = f"still, after {self.down_seconds():.0f} s and {self._attempts} attempts"
            log.warning("far node %s:%d unreachable (%s): %s", self.host, self.port, exc, what)
        else:
            log.debug("far connect to %s:%d failed: %s", self.host, self.port, exc)

    async def _connect_once(self) -> None:
        loop = self.hub.loop
        _t, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(self),
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context is not None else None,
            ),
            self.timeout,
        )
        self._proto = proto
        status, body = await self._request(Op.HELLO, 0, encode_hello(VERSION, self.secret))
        if status != Status.OK:
            raise FarUnavailable(f"far node refused HELLO: {decode_message(body)}")
        _version, name = decode_hello_reply(body)
        new_node = name != self.node_name
        clear = self.clear_on_return and self.connected_once
        for st in self.structures:
            if clear and not new_node and st.ds:
                # the same instance after a partition or stall: it may hold copies
                # that missed writes; NOT_FOUND (gone already) is as good
                await self._request(Op.DESTRUCT, st.ds, b"")
                st.ds = 0
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
        if clear:
            self.clears += 1
            log.warning(
                "far node %s:%d rejoins cleared: trusted for nothing it held", self.host, self.port
            )
            for st in self.structures:
                cleared = getattr(st.owner, "on_far_cleared", None)
                if cleared is not None:
                    cleared()
        elif new_node and self.node_name:
            for st in self.structures:
                reset = getattr(st.owner, "on_far_reset", None)
                if reset is not None:
                    reset()
        if self.node_name:
            self.reconnects += 1
        self.node_name = name
        self._timeouts_in_row = 0
        if not self.connected_once:
            log.info("connected to far node %s at %s:%d", name, self.host, self.port)
        self._came_up("reconnected" if not new_node else f"a new instance, {name}")

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
