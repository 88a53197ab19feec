"""Typed protocol errors and the one function that turns them into reply lines.

Every error the memcached parser can report is one of three kinds, matching
the three error strings of memcached's doc/protocol.txt:

    ProtocolError
      +-- CommandError   -> "ERROR"               (unknown command, bad arity)
      +-- ClientError    -> "CLIENT_ERROR <msg>"  (the input breaks the protocol)
      +-- ServerError    -> "SERVER_ERROR <msg>"  (the server can't do it)

An error raised by the parser has already consumed the offending input, so
the next call continues with the next command, as memcached does. `noreply`
is set when a classic command asked for no reply: memcached suppresses even
its error lines then (meta commands always return errors). `close` asks the
server to close the connection after writing the line.
"""

from __future__ import annotations

__all__ = ["ClientError", "CommandError", "ProtocolError", "ServerError", "error_line"]


class ProtocolError(Exception):
    """A request that cannot be served as sent; carries the reply's text."""

    prefix = b""

    def __init__(self, message: str = "", *, noreply: bool = False, close: bool = False):
        super().__init__(message)
        self.message = message  # text after the prefix, ASCII
        self.noreply = noreply  # classic command with noreply: write nothing
        self.close = close  # close the connection after the reply


class CommandError(ProtocolError):
    """Unknown command or wrong number of tokens: memcached's bare `ERROR`."""

    prefix = b"ERROR"


class ClientError(ProtocolError):
    """The client broke the protocol: `CLIENT_ERROR <message>`."""

    prefix = b"CLIENT_ERROR"


class ServerError(ProtocolError):
    """The server cannot carry the request out: `SERVER_ERROR <message>`."""

    prefix = b"SERVER_ERROR"


def error_line(exc: ProtocolError) -> bytes:
    """The exact reply line for `exc` (b"" when noreply suppresses it)."""
    if exc.noreply:
        return b""
    if exc.message:
        return b"%s %s\r\n" % (exc.prefix, exc.message.encode("ascii", "replace"))
    return exc.prefix + b"\r\n"
