"""Reply composition for memcached's classic text commands.

Replies are bytes: a retrieval hit is `value_header(...)` then the value then
b"\\r\\n"; or, on the compiled hot path, `append_value_header(buf, ...)` writes
the same header straight into a bytearray the value is copied after.
"""

from __future__ import annotations

from collections.abc import Iterable

import cython

if cython.compiled:
    from cython.cimports.cpython.bytearray import PyByteArray_AS_STRING, PyByteArray_Resize
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING
    from cython.cimports.libc.string import memcpy

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
    "append_value_header",
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
HEADER_ROOM = cython.declare(cython.Py_ssize_t, 6 + 3 * 21 + 2)  # a VALUE line, less its key


def value_header(key: bytes, flags: int, nbytes: int, cas: int | None = None) -> bytes:
    """`VALUE <key> <flags> <bytes> [<cas>]\\r\\n` for get/gets/gat/gats."""
    if cas is None:
        return b"VALUE %s %d %d\r\n" % (key, flags, nbytes)
    return b"VALUE %s %d %d %d\r\n" % (key, flags, nbytes, cas)


def append_value_header(
    buf: bytearray,
    key: bytes,
    flags: cython.ulonglong,
    nbytes: cython.ulonglong,
    cas: cython.ulonglong,
    with_cas: cython.bint,
) -> cython.void:
    """Append `VALUE <key> <flags> <bytes>[ <cas>]\\r\\n` (value_header's bytes) to `buf`."""
    if not cython.compiled:
        buf += value_header(key, flags, nbytes, cas if with_cas else None)
        return
    start: cython.Py_ssize_t = len(buf)
    PyByteArray_Resize(buf, start + HEADER_ROOM + len(key))  # room for the longest header
    base = cython.cast(cython.p_char, PyByteArray_AS_STRING(buf))
    end = write_value_header(base + start, key, flags, nbytes, cas, with_cas)
    PyByteArray_Resize(buf, end - base)


@cython.cfunc
def write_value_header(
    p: cython.p_char,
    key: bytes,
    flags: cython.ulonglong,
    nbytes: cython.ulonglong,
    cas: cython.ulonglong,
    with_cas: cython.bint,
) -> cython.p_char:
    """Compiled callers: value_header's bytes written at p (room: HEADER_ROOM + len(key)).

    Returns the end of what was written.
    """
    nkey: cython.Py_ssize_t = len(key)
    memcpy(p, b"VALUE ", 6)
    p += 6
    memcpy(p, PyBytes_AS_STRING(key), nkey)
    p += nkey
    p[0] = 32
    p = _put_uint(p + 1, flags)
    p[0] = 32
    p = _put_uint(p + 1, nbytes)
    if with_cas:
        p[0] = 32
        p = _put_uint(p + 1, cas)
    p[0] = 13
    p[1] = 10
    return p + 2


@cython.cfunc
@cython.inline
def _put_uint(p: cython.p_char, v: cython.ulonglong) -> cython.p_char:
    """Write `v` in decimal at p; the end of what was written."""
    tmp = cython.declare(cython.char[21])
    n: cython.int = 0
    while True:
        tmp[n] = 48 + v % 10
        n += 1
        v //= 10
        if v == 0:
            break
    while n:
        n -= 1
        p[0] = tmp[n]
        p += 1
    return p


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
