"""Reply composition for memcached's classic text commands.

Replies are bytes, composed without copying values: a retrieval hit is
`value_header(...)` then the value then b"\\r\\n", so a server can hand the
value's memoryview to one writelines() call with everything else.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CRLF",
    "DELETED",
    "END",
    "EXISTS",
    "MEMLIMIT_TOO_LARGE",
    "MEMLIMIT_TOO_SMALL",
    "MN",
    "NOT_FOUND",
    "NOT_STORED",
    "OK",
    "RESET",
    "SHUTDOWN_DISABLED",
    "STORED",
    "TOUCHED",
    "compose_number",
    "compose_stats",
    "compose_version",
    "value_header",
]

CRLF = b"\r\n"
STORED = b"STORED\r\n"
NOT_STORED = b"NOT_STORED\r\n"
EXISTS = b"EXISTS\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
DELETED = b"DELETED\r\n"
TOUCHED = b"TOUCHED\r\n"
END = b"END\r\n"
OK = b"OK\r\n"
RESET = b"RESET\r\n"
MN = b"MN\r\n"
SHUTDOWN_DISABLED = b"ERROR: shutdown not enabled\r\n"
MEMLIMIT_TOO_SMALL = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
MEMLIMIT_TOO_LARGE = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"


def value_header(key: bytes, flags: int, nbytes: int, cas: int | None = None) -> bytes:
    """`VALUE <key> <flags> <bytes> [<cas>]\\r\\n` for get/gets/gat/gats."""
    if cas is None:
        return b"VALUE %s %d %d\r\n" % (key, flags, nbytes)
    return b"VALUE %s %d %d %d\r\n" % (key, flags, nbytes, cas)


def compose_number(value: int) -> bytes:
    """The reply to a successful incr/decr: the new value."""
    return b"%d\r\n" % value


def compose_version(version: str) -> bytes:
    """`VERSION <version>\\r\\n`."""
    return b"VERSION " + version.encode("ascii") + CRLF


def _stat_value(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"yes" if value else b"no"
    if isinstance(value, float):
        return b"%.6f" % value
    return str(value).encode("ascii", "replace")


def compose_stats(stats: Iterable[tuple[str, object]]) -> bytes:
    """`STAT <name> <value>` lines and END; bools print yes/no, floats %.6f."""
    lines = [b"STAT %s %s\r\n" % (name.encode("ascii"), _stat_value(v)) for name, v in stats]
    lines.append(END)
    return b"".join(lines)
