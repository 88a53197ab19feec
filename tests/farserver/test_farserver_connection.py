"""farserver.server.FarConnection in-process, with a recording transport.

Spec under test (server.py's docstring): one transport.write per
data_received however many frames it held; HELLO first; a malformed frame
writes the replies before it, then closes; an exception that is not a
NodeError is a bug: logged with its frame, answered with ERROR, connection
closed. And DESIGN.md §1: farserver imports protocol.far, nothing of kvcache,
runtime or protocol.memcache.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import pathlib

import pytest

from farserver import ops
from farserver.config import Config
from farserver.node import Node
from farserver.server import FarConnection
from protocol.far import (
    VERSION,
    FrameReader,
    Op,
    Status,
    encode_frame,
    encode_hello,
)


class Transport:
    """Records what FarConnection does to its transport."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def get_extra_info(self, name):
        """A fixed peer address."""
        return ("127.0.0.1", 4242) if name == "peername" else None

    def set_write_buffer_limits(self, high=None, low=None):
        """Ignored."""

    def write(self, data):
        """Record one write."""
        self.writes.append(bytes(data))

    def writelines(self, pieces):
        """Record one write of several pieces."""
        self.writes.append(b"".join(pieces))

    def close(self):
        """Record the close."""
        self.closed = True

    def is_closing(self):
        """Whether close() was called."""
        return self.closed

    def pause_reading(self):
        """Record the pause."""
        self.paused = True

    def resume_reading(self):
        """Record the resume."""
        self.paused = False


@pytest.fixture
def conn():
    """A FarConnection on a fresh Node, inside a running loop's context."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = Node(1 << 20)
    connection = FarConnection(node, Config(), set())
    transport = Transport()

    async def made():
        connection.connection_made(transport)

    loop.run_until_complete(made())
    yield connection, transport, node
    asyncio.set_event_loop(None)
    loop.close()


def replies(transport: Transport) -> list:
    """Every reply frame written so far."""
    reader = FrameReader(replies=True)
    for data in transport.writes:
        reader.feed(data)
    return list(reader)


def hello() -> bytes:
    """A HELLO request frame."""
    return encode_frame(1, Op.HELLO, 0, encode_hello(VERSION))


def test_one_write_per_read(conn):
    connection, transport, _ = conn
    connection.data_received(
        hello() + b"".join(encode_frame(i, Op.PING, 0, b"x") for i in range(50))
    )
    assert len(transport.writes) == 1
    assert [r.req_id for r in replies(transport)] == [1, *range(50)]
    connection.data_received(encode_frame(7, Op.PING, 0, b"y" * 100_000))  # large: writelines
    assert len(transport.writes) == 2 and replies(transport)[-1].body == b"y" * 100_000


def test_op_before_hello_closes_without_reply(conn, caplog):
    connection, transport, _ = conn
    with caplog.at_level(logging.WARNING, logger="farserver"):
        connection.data_received(encode_frame(1, Op.STATS, 0) + hello())
    assert transport.closed and transport.writes == []
    assert "STATS before HELLO" in caplog.text


def test_bad_frame_writes_earlier_replies_then_closes(conn, caplog):
    connection, transport, _ = conn
    with caplog.at_level(logging.WARNING, logger="farserver"):
        connection.data_received(hello() + encode_frame(2, Op.PING, 0, b"a") + b"\xff" * 16)
        connection.data_received(encode_frame(3, Op.PING, 0, b"ignored"))
    assert [r.req_id for r in replies(transport)] == [1, 2]
    assert transport.closed and "bad frame" in caplog.text


def test_bug_is_logged_answered_with_error_and_closes(conn, caplog, monkeypatch):
    connection, transport, _ = conn
    connection.data_received(hello())

    def broken(node, frame):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(connection._ready, Op.PING, broken)
    with caplog.at_level(logging.ERROR, logger="farserver"):
        connection.data_received(encode_frame(9, Op.PING, 0, b"p") + encode_frame(10, Op.PING, 0))
    last = replies(transport)[-1]
    assert (last.req_id, last.status, last.body) == (9, Status.ERROR, b"internal error")
    assert transport.closed
    assert "bug handling PING req_id=9" in caplog.text and "ZeroDivisionError" in caplog.text


def test_slow_reader_pauses_reading(conn):
    connection, transport, _ = conn
    connection.pause_writing()
    assert transport.paused
    connection.resume_writing()
    assert not transport.paused


def test_every_op_but_hello_has_a_handler():
    assert set(ops.HANDLERS) == set(Op) - {Op.HELLO}


def test_farserver_imports_only_protocol_far():
    """The node needs the far protocol and the TLS contexts both links share, nothing else."""
    root = pathlib.Path(__file__).resolve().parents[2] / "farserver"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("kvcache", "runtime", "loadtest", "tests"), (path, name)
                if top == "protocol":
                    assert name in ("protocol.far", "protocol.tls") or name.startswith(
                        "protocol.far."
                    ), (path, name)


def test_frames_are_small_until_hello(conn):
    connection, transport, _ = conn
    connection.data_received(encode_frame(1, Op.HELLO, 0, encode_hello(VERSION, b"s" * 5000)))
    assert transport.closed and transport.writes == []


def test_frames_are_large_after_hello(conn):
    connection, transport, _ = conn
    connection.data_received(hello() + encode_frame(2, Op.PING, 0, b"p" * 5000))
    assert not transport.closed and replies(transport)[-1].body == b"p" * 5000
