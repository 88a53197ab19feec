"""Oracle case tables: input bytes paired, request by request, with memcached's reply.

A `Case` holds the bytes a client sends and one step per request: our side
(the event the parser must produce, or the exact error line it must give)
and memcached 1.6.18's side (the bytes it answered, observed on the wire).
An error step is `err(line)`: our line *is* memcached's bytes. A table is
checked twice: against our parser, and live against memcached with `ask()`,
so the recorded bytes can never drift from the real server's.

`ask()` is fast where `Memcached.exchange` waits 150 ms for silence: it
appends a sentinel request whose reply no case can produce, a meta get of a
fresh random key with a random opaque (`mg _ask_<n> O<n>`, answered
`EN O<n>\\r\\n` after every earlier reply by memcached 1.6.18), and reads
until that reply or the close. Each call opens a new connection, so cases
are independent; they stay independent in the server's keyspace by using
keys no other case stores (never flush_all, whose delay semantics would leak
into other tests).
"""

from __future__ import annotations

import os
import socket
import time
from typing import NamedTuple

from oracle import Memcached

__all__ = ["QUIET", "Case", "ask", "case", "err"]


class Case(NamedTuple):
    """Input bytes and, per request, (our event or error line, memcached's reply)."""

    id: str
    data: bytes
    steps: list[tuple[object, bytes]]
    closes: bool = False  # memcached closes the connection after the last step

    @property
    def ours(self) -> list[object]:
        """What helpers.check() must return for `data`."""
        return [ours for ours, _ in self.steps]

    @property
    def theirs(self) -> bytes:
        """What memcached 1.6.18 answers to `data`."""
        return b"".join(theirs for _, theirs in self.steps)


def case(id: str, data: bytes, *steps: tuple[object, bytes], closes: bool = False) -> Case:
    """A Case, its steps given as arguments."""
    return Case(id, data, list(steps), closes)


def err(line: bytes) -> tuple[bytes, bytes]:
    """A step whose error line is exactly what memcached sends."""
    return (line, line)


QUIET = (b"", b"")  # an error hidden by noreply: nothing on the wire, either side


def ask(server: Memcached, data: bytes, limit: float = 5.0) -> tuple[bytes, bool]:
    """(memcached's reply to `data` without the sentinel's, whether it closed)."""
    nonce = os.urandom(8).hex().encode()
    sentinel = b"mg _ask_%s O%s\r\n" % (nonce, nonce)
    sentinel_reply = b"EN O%s\r\n" % nonce
    out = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=limit) as s:
        s.sendall(data + sentinel)
        deadline = time.monotonic() + limit
        while not out.endswith(sentinel_reply):
            if time.monotonic() > deadline:
                raise TimeoutError(f"memcached sent {bytes(out[-200:])!r}, not the sentinel")
            try:
                chunk = s.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            out += chunk
    if not closed:
        del out[-len(sentinel_reply) :]
    return bytes(out), closed
