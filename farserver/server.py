"""The far node's TCP server: one asyncio.Protocol per connection, on uvloop.

    data_received(bytes) -> FrameReader -> frames -> handler table -> replies
                         -> one transport.write per read (writelines when a
                            large value would otherwise be copied into a join)

A connection's first frame must be HELLO: version 1 and, when the node has a
secret, that secret (compared in constant time). Until it passes, frames are
limited to 4 KiB, so a stranger cannot make the node buffer 64 MiB. A wrong secret gets
AUTH_FAILED and the connection closes; any other op first closes it with a
logged reason. HELLO's reply names the node instance, `farserver HOST:PORT
<16 random hex digits>`: a restarted node has a new name, which is how a
client learns that its structures and far copies are gone. Frames are
handled in arrival order, so replies go out in order, though the protocol
lets a node reorder them.

Failure isolation: a malformed frame (FrameError) closes only its own
connection, after the replies to the frames before it, with a logged reason.
A NodeError is a reply status. Any other exception is a bug: it is logged
with its frame, answered with ERROR and the connection is closed; the server
keeps going (DESIGN.md §8). When a client stops reading, the node stops
reading from it (pause_writing), so its buffered replies stay bounded.

SIGTERM/SIGINT: close the listener, let every connection flush what it has
written, then return (exit status 0). Connections that do not drain within
5 s are aborted. Expired items are swept once a second.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import signal
import time

from farserver.compute import Reply
from farserver.config import Config
from farserver.errors import BadRequest, NodeError
from farserver.node import Node
from farserver.ops import HANDLERS, Handler
from protocol.far import (
    VERSION,
    Frame,
    FrameError,
    FrameReader,
    Op,
    Status,
    decode_hello,
    encode_header,
    encode_hello_reply,
)

__all__ = ["FarConnection", "serve"]

logger = logging.getLogger("farserver")

SWEEP_INTERVAL = 1.0  # seconds between expiry sweeps
DRAIN_TIMEOUT = 5.0  # seconds connections get to flush at shutdown
_JOIN_MAX = 64 * 1024  # a value above this is written as its own buffer, not joined
_WRITE_HIGH = 4 * 1024 * 1024  # bytes of unsent replies before reading pauses
_HELLO_MAX_FRAME = 4096  # frame limit until HELLO passes: strangers can't make us buffer 64 MiB
_BUG = b"internal error"  # ERROR reply body when a handler has a bug


class FarConnection(asyncio.Protocol):
    """One client connection: frames in, replies out, in order."""

    def __init__(self, node: Node, config: Config, connections: set[FarConnection]):
        self._node = node
        self._secret = config.secret  # None: any secret is accepted
        self._connections = connections  # every open connection, for shutdown
        self._max_frame = config.max_frame  # bytes, once HELLO has passed
        self._reader = FrameReader(_HELLO_MAX_FRAME)
        self._ready: dict[int, Handler] = {**HANDLERS, Op.HELLO: self._hello}
        self._handlers: dict[int, Handler] = {Op.HELLO: self._hello}  # until HELLO passes
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._closing: str | None = None  # reason: close once this batch is written
        self.closed: asyncio.Future[None] | None = None  # resolved by connection_lost

    # -- asyncio callbacks (loop only, never park) -------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection; replies may be 4 MiB behind before reading pauses."""
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        self.closed = asyncio.get_running_loop().create_future()
        self._connections.add(self)
        self._node.connections += 1
        self._node.total_connections += 1
        logger.debug("connection from %s", self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self._connections.discard(self)
        self._node.connections -= 1
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        logger.debug("connection from %s closed%s", self._peer, f": {exc}" if exc else "")

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop reading its requests."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up: read again."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        """Handle every whole frame received; write all replies at once."""
        transport = self._transport
        if self._closing is not None or transport is None:
            return
        reader = self._reader
        reader.feed(data)
        node = self._node
        node.now = int(time.time())
        out: list[bytes] = []
        joined = True  # every piece is small: join them into one buffer
        frame = None
        try:
            while (frame := reader.next()) is not None:
                handler = self._handlers.get(frame.op)
                if handler is None:
                    self._closing = f"{Op(frame.op).name} before HELLO"
                    break
                try:
                    status, head, value = handler(node, frame)
                except NodeError as exc:
                    status, head, value = exc.status, exc.message.encode(), b""
                out.append(
                    encode_header(frame.req_id, frame.op, frame.ds, len(head) + len(value), status)
                    + head
                )
                if value:
                    out.append(value)
                    if len(value) > _JOIN_MAX:
                        joined = False
                if self._closing is not None:
                    break
        except FrameError as exc:
            self._closing = f"bad frame: {exc}"
        except Exception:
            assert frame is not None  # FrameReader raises only FrameError
            logger.exception(
                "bug handling %s req_id=%d ds=%d (%d-byte body) from %s",
                Op(frame.op).name,
                frame.req_id,
                frame.ds,
                len(frame.body),
                self._peer,
            )
            out.append(encode_header(frame.req_id, frame.op, frame.ds, len(_BUG), Status.ERROR))
            out.append(_BUG)
            self._closing = "internal error"
        if out:
            if len(out) == 1:
                transport.write(out[0])
            elif joined:
                transport.write(b"".join(out))
            else:
                transport.writelines(out)
        if self._closing is not None:
            logger.warning("closing connection from %s: %s", self._peer, self._closing)
            transport.close()

    # -- HELLO: the connection's own op -----------------------------------------

    def _hello(self, node: Node, frame: Frame) -> Reply:
        version, secret = decode_hello(frame.body)
        if version != VERSION:
            self._closing = f"HELLO with version {version}, this node speaks {VERSION}"
            raise BadRequest(f"unsupported version {version}; this node speaks {VERSION}")
        if self._secret is not None and not hmac.compare_digest(secret, self._secret):
            self._closing = "HELLO with a wrong secret"
            return Status.AUTH_FAILED, b"wrong secret", b""
        self._handlers = self._ready
        self._reader.max_frame = self._max_frame
        return Status.OK, encode_hello_reply(VERSION, node.name), b""

    def close(self) -> None:
        """Close after what is already written has gone out (shutdown)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close now, dropping unsent replies."""
        if self._transport is not None:
            self._transport.abort()


def watch_parent(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    """Set `stop` when the pipe `fd` reads end-of-file: the parent process is gone."""

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            logger.warning("farserver: parent process exited; stopping")
            stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


async def serve(config: Config) -> None:
    """Run a far node until SIGTERM or SIGINT; then drain and return (hub only)."""
    loop = asyncio.get_running_loop()
    node = Node(config.limit_bytes)
    connections: set[FarConnection] = set()
    server = await loop.create_server(
        lambda: FarConnection(node, config, connections),
        config.host,
        config.port,
        reuse_address=True,
        backlog=1024,
        ssl=config.ssl_context,
    )
    host, port = server.sockets[0].getsockname()[:2]
    node.name = f"farserver {host}:{port} {secrets.token_hex(8)}"  # new per process
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.parent_fd is not None:
        watch_parent(loop, config.parent_fd, stop)
    sweeper: asyncio.TimerHandle | None = None

    def sweep() -> None:
        nonlocal sweeper
        expired = node.sweep(int(time.time()))
        if expired:
            logger.debug("swept %d expired items", expired)
        sweeper = loop.call_later(SWEEP_INTERVAL, sweep)

    sweeper = loop.call_later(SWEEP_INTERVAL, sweep)
    logger.info("farserver listening on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        logger.info("farserver stopping: %d connections to drain", len(connections))
        sweeper.cancel()
        server.close()
        open_conns = list(connections)
        for conn in open_conns:
            conn.close()
        waits = [c.closed for c in open_conns if c.closed is not None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=DRAIN_TIMEOUT)
            for conn in open_conns:
                if conn.closed in pending:
                    conn.abort()
        await server.wait_closed()
        logger.info("farserver stopped")  # signal handlers stay: a second signal is no-op
