"""Feeding helpers for parser tests (h11's pattern): whole, bytewise, trailing.

`run(data, chunks)` feeds the parser and returns what it produced, in order:
Request events, and for each ProtocolError the exact reply line
`error_line()` gives (b"" when noreply hides it), then "CLOSE" if the parser
closed. Every parser test checks its input three ways with `check()`: whole,
one byte at a time, and followed by trailing data, which must not change
the events before it.
"""

from __future__ import annotations

from protocol import ProtocolError, error_line
from protocol.memcache import NEED_DATA, Parser

__all__ = ["TRAILER", "check", "run"]

TRAILER = b"mn\r\n"


def run(data: bytes, chunk: int | None = None, parser: Parser | None = None) -> list:
    """Events and error lines from `data` fed in `chunk`-byte pieces (None: whole)."""
    p = parser or Parser()
    out: list = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        p.feed(data[i : i + step])
        while True:
            try:
                ev = p.next_event()
            except ProtocolError as exc:
                out.append(error_line(exc))
                continue
            if ev is NEED_DATA:
                break
            out.append(ev)
    if p.closed:
        out.append("CLOSE")
    return out


def check(data: bytes, **parser_args) -> list:
    """run() whole, bytewise and with trailing data; assert all agree; return it."""
    whole = run(data, None, Parser(**parser_args))
    bytewise = run(data, 1, Parser(**parser_args))
    assert bytewise == whole, (whole, bytewise)
    trailing = run(data + TRAILER, None, Parser(**parser_args))
    if "CLOSE" not in whole:
        assert trailing[: len(whole)] == whole
        assert [type(e).__name__ for e in trailing[len(whole) :]] == ["MetaNoop"], trailing
    return whole
