"""A real farserver process on an ephemeral 127.0.0.1 port, and a blocking client.

`FarNode(*args)` runs `python -m farserver -p 0 -l 127.0.0.1 *args`, reads
the port from its startup line `farserver listening on 127.0.0.1:PORT`, and
`stop()` sends SIGTERM to its PID and returns the exit status. `FarClient`
speaks protocol.far over a plain socket: `call()` sends one request and
waits for its reply; `pipeline()` sends many in one write and matches the
replies by req_id.
"""

from __future__ import annotations

import os
import re
import socket

from protocol.far import (
    VERSION,
    DsType,
    Frame,
    FrameReader,
    Op,
    Status,
    decode_construct_reply,
    encode_construct,
    encode_frame,
    encode_hello,
)
from runtime.farprocess import FarProcess

__all__ = ["FarClient", "FarNode"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LISTENING = re.compile(rb"^farserver listening on 127\.0\.0\.1:(\d+)$")


class FarNode(FarProcess):
    """A farserver child process (runtime.farprocess) with a test client maker."""

    def __init__(self, *args: str, timeout: float = 10.0):
        super().__init__(*args, timeout=timeout)

    def client(self, secret: bytes = b"", hello: bool = True) -> FarClient:
        """A connected client, HELLO done unless hello=False."""
        client = FarClient(self.port)
        if hello:
            frame = client.call(Op.HELLO, 0, encode_hello(VERSION, secret))
            assert frame.status == Status.OK, frame
        return client

    def __enter__(self) -> FarNode:
        return self


class FarClient:
    """A blocking protocol.far client for tests."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(replies=True)
        self.next_id = 1

    def send(self, op: int, ds: int = 0, body: bytes = b"") -> int:
        """Send one request; returns its req_id."""
        req_id = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        self.sock.sendall(encode_frame(req_id, op, ds, body))
        return req_id

    def recv(self) -> Frame:
        """The next reply frame (ConnectionError if the node closed)."""
        while True:
            frame = self.reader.next()
            if frame is not None:
                return frame
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("farserver closed the connection")
            self.reader.feed(data)

    def call(self, op: int, ds: int = 0, body: bytes = b"") -> Frame:
        """One request, its reply (checked to echo req_id and op)."""
        req_id = self.send(op, ds, body)
        frame = self.recv()
        assert (frame.req_id, frame.op) == (req_id, op), frame
        return frame

    def pipeline(self, requests: list[tuple[int, int, bytes]]) -> list[Frame]:
        """Send (op, ds, body) requests in one write; replies in request order."""
        ids = []
        out = []
        for op, ds, body in requests:
            ids.append(self.next_id)
            out.append(encode_frame(self.next_id, op, ds, body))
            self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        self.sock.sendall(b"".join(out))
        replies: dict[int, Frame] = {}
        while len(replies) < len(ids):
            frame = self.recv()
            replies[frame.req_id] = frame
        return [replies[i] for i in ids]

    def construct(self, ds_type: DsType, **params) -> int:
        """A new data structure's id."""
        frame = self.call(Op.CONSTRUCT, 0, encode_construct(ds_type, params))
        assert frame.status == Status.OK, frame
        return decode_construct_reply(frame.body)

    def closed(self, wait: float = 5.0) -> bool:
        """True when the node has closed this connection (within `wait` s)."""
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
