# cython: annotation_typing=False
"""Bodies of the far protocol's frames: one encoder and one decoder per shape.

Request bodies (after the 16-byte frame header, little-endian):

    HELLO      <H version> secret-bytes
    CONSTRUCT  <B type> params             params: a UTF-8 JSON object
    DESTRUCT   (empty; the header's ds)
    READ       <H nlen> name
    WRITE      <H nlen> name <I flags> <I exptime> <Q cas> value
    REMOVE     <H nlen> name
    COMPUTE    <H oplen> opname <H nlen> name args     (compute.py: args)
    STATS      (empty)
    PING       anything (echoed)
    SCAN       <Q cursor> <I max_items> <I max_bytes>  (the header's ds)

Reply bodies on OK:

    HELLO      <H version> node-name (UTF-8; new for every node instance)
    CONSTRUCT  <I ds>
    READ       <I flags> <I exptime> <Q cas> value      ("the item")
    STATS      a UTF-8 JSON object
    COMPUTE    op-specific (compute.py)
    SCAN       <Q next_cursor> <I count> then count entries, each
               <H nlen> name <I flags> <I exptime> <Q cas> <I vlen> value
    others     empty

Any other status's body is a UTF-8 message (maybe empty). A name is an
object's address: for boxes and arrays the 8-byte little-endian object id or
element index (`encode_index`), for hash tables the key, at most 250 bytes.
`exptime` is absolute unix seconds, 0 = never; flags and cas are 0 for boxes
and arrays.

SCAN enumerates a structure's objects in pages: a hash table's items, a
box's or an array's objects (named as READ names them, flags, exptime and
cas 0). A cursor is a position in the structure's write order: 0 starts a
scan, each reply's next_cursor continues it, next_cursor 0 says it is
complete. The node keeps no state per scan. Guarantees of a full scan (one
ds, cursor 0 until next_cursor 0, on one node instance):
- every object that exists when the last call runs is returned, and the
  last entry returned for it is that state, whatever was written, removed,
  evicted or expired between the calls (any write, touch included, puts an
  object back ahead of the cursor); so every object that exists from the
  first call to the last is returned at least once;
- an object written during the scan may be returned more than once (older
  states first); one removed during the scan may or may not appear;
- an expired item is never returned; SCAN changes nothing (LRU order stays).
A reply holds at most max_items entries (max_items 0 is a BAD_REQUEST) and at
most max_bytes bytes of entries, except that a first entry bigger than
max_bytes comes alone (a big value still makes progress); a node may also
end a reply sooner (fewer entries, even none, with next_cursor not 0; the
node's limits are farserver/seqlog.py's). Every cursor is valid: one from an
older reply resumes there however the structure changed since (a retried
or resumed scan), one past the structure's last write gives count 0 and
next_cursor 0. Cursors are per structure; a ds that is gone (destructed, a
restarted node) is NOT_FOUND.

Decoders raise `FrameError` for a body that does not have its shape (short,
trailing bytes, a name over 250 bytes, bad JSON, an unknown type); whether a
well-shaped body makes sense (a known ds, an index in range) is the node's
call. Encoders trust their caller except for name lengths (ValueError).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import cython

from protocol.far.codes import MAX_NAME, DsType
from protocol.far.frames import FrameError

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy
    from cython.cimports.protocol.far.frames import _u32

__all__ = [
    "INDEX",
    "ITEM",
    "MAX_OPNAME",
    "SCAN",
    "SCAN_ENTRY_SIZE",
    "SCAN_HEAD",
    "decode_compute",
    "decode_construct",
    "decode_construct_reply",
    "decode_hello",
    "decode_hello_reply",
    "decode_index",
    "decode_item",
    "decode_message",
    "decode_name",
    "decode_scan",
    "decode_scan_reply",
    "decode_stats_reply",
    "decode_write",
    "encode_compute",
    "encode_construct",
    "encode_construct_reply",
    "encode_hello",
    "encode_hello_reply",
    "encode_index",
    "encode_item",
    "encode_message",
    "encode_name",
    "encode_scan",
    "encode_scan_entries",
    "encode_scan_reply",
    "encode_stats_reply",
    "encode_write",
    "item_header",
    "scan_reply_head",
    "secret_from_file",
]

MAX_OPNAME = 32  # bytes of a compute op's ASCII name

SCAN = struct.Struct("<QII")  # SCAN's request: cursor, max_items, max_bytes
SCAN_HEAD = struct.Struct("<QI")  # SCAN's reply: next_cursor (0 = complete), count
_ENTRY = struct.Struct("<IIQI")  # a scan entry after its name: flags, exptime, cas, vlen
SCAN_ENTRY_SIZE = 2 + _ENTRY.size  # 22: a scan entry's bytes beyond its name and value
ITEM = struct.Struct("<IIQ")  # flags, exptime (unix s, 0 = never), cas; then the value
_ITEM_SIZE = cython.declare(cython.Py_ssize_t, ITEM.size)  # a C constant when compiled
INDEX = struct.Struct("<Q")  # a box's object id or an array's element index
_H = struct.Struct("<H")  # name and opname lengths, HELLO's version
_I = struct.Struct("<I")  # CONSTRUCT's reply: the new ds id
_B = struct.Struct("<B")  # CONSTRUCT's type
_DS_TYPES = frozenset(int(t) for t in DsType)


def _check_name(name: bytes) -> None:
    if len(name) > MAX_NAME:
        raise ValueError(f"name of {len(name)} bytes is over {MAX_NAME}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError(f"{what} is a JSON {type(obj).__name__}, not an object")
    return obj


# -- names ---------------------------------------------------------------


def encode_index(index: int) -> bytes:
    """The 8-byte name of a box's object id or an array's element index."""
    return INDEX.pack(index)


def decode_index(name: bytes) -> int:
    """The object id or element index a box/array name stands for."""
    if len(name) != INDEX.size:
        raise FrameError(f"an index name is 8 bytes, not {len(name)}")
    return INDEX.unpack(name)[0]


def encode_name(name: bytes) -> bytes:
    """READ and REMOVE bodies: `<H nlen> name`."""
    _check_name(name)
    if cython.compiled and type(name) is bytes:
        return _name_body(name)
    return _H.pack(len(name)) + name


@cython.cfunc
@cython.locals(name=bytes, n=cython.Py_ssize_t, p=cython.p_uchar)
def _name_body(name) -> object:
    """encode_name in one allocation (compiled only)."""
    n = len(name)
    out = PyBytes_FromStringAndSize(cython.NULL, 2 + n)
    p = cython.cast(cython.p_uchar, PyBytes_AS_STRING(out))
    p[0] = n & 0xFF
    p[1] = (n >> 8) & 0xFF
    memcpy(p + 2, PyBytes_AS_STRING(name), n)
    return out


def decode_name(body: bytes) -> bytes:
    """The name of a READ or REMOVE body."""
    if len(body) < 2:
        raise FrameError("name body shorter than its length field")
    nlen = _H.unpack_from(body)[0]
    if nlen > MAX_NAME:
        raise FrameError(f"name of {nlen} bytes is over {MAX_NAME}")
    if len(body) != 2 + nlen:
        raise FrameError(f"name body of {len(body)} bytes for a {nlen}-byte name")
    return body[2:]


# -- items ---------------------------------------------------------------


def item_header(flags: int, exptime: int, cas: int) -> bytes:
    """The 16 bytes before an item's value in a READ (or gat) reply."""
    return ITEM.pack(flags, exptime, cas)


def encode_item(value: bytes, flags: int = 0, exptime: int = 0, cas: int = 0) -> bytes:
    """A READ reply body: the item header, then the value."""
    return ITEM.pack(flags, exptime, cas) + value


def decode_item(body: bytes) -> tuple[int, int, int, bytes]:
    """(flags, exptime, cas, value) of a READ reply body."""
    if len(body) < _ITEM_SIZE:
        raise FrameError(f"item body of {len(body)} bytes is shorter than its header")
    if cython.compiled and type(body) is bytes:
        return _item(body)
    flags, exptime, cas = ITEM.unpack_from(body)
    return flags, exptime, cas, body[ITEM.size :]


@cython.cfunc
@cython.locals(body=bytes, p=cython.p_uchar, lo=cython.ulonglong, hi=cython.ulonglong)
def _item(body) -> tuple:
    """decode_item's fields read in place (compiled only; the body holds a header)."""
    p = cython.cast(cython.p_uchar, PyBytes_AS_STRING(body))
    flags = _u32(p)
    exptime = _u32(p + 4)
    lo = cython.cast(cython.ulonglong, _u32(p + 8))
    hi = cython.cast(cython.ulonglong, _u32(p + 12))
    return flags, exptime, lo | (hi << 32), body[16:]


def encode_write(
    name: bytes, value: bytes, flags: int = 0, exptime: int = 0, cas: int = 0
) -> bytes:
    """A WRITE body: the name, then the item."""
    _check_name(name)
    return _H.pack(len(name)) + name + ITEM.pack(flags, exptime, cas) + value


def decode_write(body: bytes) -> tuple[bytes, int, int, int, bytes]:
    """(name, flags, exptime, cas, value) of a WRITE body."""
    if len(body) < 2:
        raise FrameError("write body shorter than its length field")
    nlen = _H.unpack_from(body)[0]
    if nlen > MAX_NAME:
        raise FrameError(f"name of {nlen} bytes is over {MAX_NAME}")
    start = 2 + nlen
    if len(body) < start + ITEM.size:
        raise FrameError(f"write body of {len(body)} bytes too short for a {nlen}-byte name")
    flags, exptime, cas = ITEM.unpack_from(body, start)
    return body[2:start], flags, exptime, cas, body[start + ITEM.size :]


# -- scan ------------------------------------------------------------------

ScanEntry = tuple[bytes, int, int, int, bytes]  # name, flags, exptime, cas, value


def encode_scan(cursor: int, max_items: int, max_bytes: int) -> bytes:
    """A SCAN body: where to resume (0: from the start) and how much one reply may hold."""
    return SCAN.pack(cursor, max_items, max_bytes)


def decode_scan(body: bytes) -> tuple[int, int, int]:
    """(cursor, max_items, max_bytes) of a SCAN body."""
    if len(body) != SCAN.size:
        raise FrameError(f"scan body of {len(body)} bytes, not {SCAN.size}")
    return SCAN.unpack(body)


def scan_reply_head(next_cursor: int, count: int) -> bytes:
    """The 12 bytes before a SCAN reply's entries."""
    return SCAN_HEAD.pack(next_cursor, count)


def encode_scan_entries(entries: list[ScanEntry]) -> bytes:
    """A SCAN reply's entries, after its head: `<H nlen> name <I flags> <I exptime> <Q cas>
    <I vlen> value` each, joined once."""
    parts = []
    pack = _ENTRY.pack
    for name, flags, exptime, cas, value in entries:
        _check_name(name)
        parts.append(_H.pack(len(name)) + name + pack(flags, exptime, cas, len(value)))
        parts.append(value)
    return b"".join(parts)


def encode_scan_reply(next_cursor: int, entries: list[ScanEntry]) -> bytes:
    """SCAN's reply body: next_cursor (0 = complete), the entry count, the entries."""
    return SCAN_HEAD.pack(next_cursor, len(entries)) + encode_scan_entries(entries)


def decode_scan_reply(body: bytes) -> tuple[int, list[ScanEntry]]:
    """(next_cursor, [(name, flags, exptime, cas, value), ...]) of SCAN's reply body."""
    size = len(body)
    if size < SCAN_HEAD.size:
        raise FrameError(f"scan reply of {size} bytes is shorter than its head")
    next_cursor, count = SCAN_HEAD.unpack_from(body)
    pos = SCAN_HEAD.size
    entries: list[ScanEntry] = []
    for i in range(count):
        if size < pos + 2:
            raise FrameError(f"scan reply ends before entry {i} of {count}")
        nlen = _H.unpack_from(body, pos)[0]
        if nlen > MAX_NAME:
            raise FrameError(f"scan entry {i} has a name of {nlen} bytes, over {MAX_NAME}")
        start = pos + 2 + nlen
        if size < start + _ENTRY.size:
            raise FrameError(f"scan entry {i} is cut short in its name or header")
        flags, exptime, cas, vlen = _ENTRY.unpack_from(body, start)
        end = start + _ENTRY.size + vlen
        if size < end:
            raise FrameError(f"scan entry {i} has a {vlen}-byte value cut short")
        entries.append((body[pos + 2 : start], flags, exptime, cas, body[end - vlen : end]))
        pos = end
    if pos != size:
        raise FrameError(f"scan reply has {size - pos} bytes after its {count} entries")
    return next_cursor, entries


# -- compute envelope ------------------------------------------------------


def encode_compute(opname: str, name: bytes, args: bytes = b"") -> bytes:
    """A COMPUTE body: op name, object name, op-specific args (compute.py)."""
    op = opname.encode("ascii")
    if not 0 < len(op) <= MAX_OPNAME:
        raise ValueError(f"compute op name of {len(op)} bytes (1..{MAX_OPNAME})")
    _check_name(name)
    return _H.pack(len(op)) + op + _H.pack(len(name)) + name + args


def decode_compute(body: bytes) -> tuple[str, bytes, bytes]:
    """(opname, name, args) of a COMPUTE body."""
    size = len(body)
    if size < 2:
        raise FrameError("compute body shorter than its op length")
    oplen = _H.unpack_from(body)[0]
    if not 0 < oplen <= MAX_OPNAME or size < 4 + oplen:
        raise FrameError(f"compute op name of {oplen} bytes in a {size}-byte body")
    try:
        opname = body[2 : 2 + oplen].decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("compute op name is not ASCII") from None
    nlen = _H.unpack_from(body, 2 + oplen)[0]
    start = 4 + oplen
    if nlen > MAX_NAME or size < start + nlen:
        raise FrameError(f"compute name of {nlen} bytes in a {size}-byte body")
    return opname, body[start : start + nlen], body[start + nlen :]


# -- session and structures --------------------------------------------------


def secret_from_file(data: bytes) -> bytes:
    """The shared secret a secret file's bytes hold: less one trailing newline (LF or CRLF)."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def encode_hello(version: int, secret: bytes = b"") -> bytes:
    """A HELLO body: protocol version and the shared secret."""
    return _H.pack(version) + secret


def decode_hello(body: bytes) -> tuple[int, bytes]:
    """(version, secret) of a HELLO body."""
    if len(body) < 2:
        raise FrameError("hello body shorter than its version")
    return _H.unpack_from(body)[0], body[2:]


def encode_hello_reply(version: int, node_name: str) -> bytes:
    """HELLO's reply body: the node's version and name."""
    return _H.pack(version) + node_name.encode("utf-8")


def decode_hello_reply(body: bytes) -> tuple[int, str]:
    """(version, node name) of HELLO's reply body."""
    if len(body) < 2:
        raise FrameError("hello reply shorter than its version")
    try:
        return _H.unpack_from(body)[0], body[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("node name is not UTF-8") from None


def encode_construct(ds_type: int, params: dict[str, Any] | None = None) -> bytes:
    """A CONSTRUCT body: the type byte, then the params as a JSON object."""
    return _B.pack(ds_type) + json.dumps(params or {}, separators=(",", ":")).encode("utf-8")


def decode_construct(body: bytes) -> tuple[DsType, dict[str, Any]]:
    """(type, params) of a CONSTRUCT body."""
    if not body:
        raise FrameError("construct body is empty")
    if body[0] not in _DS_TYPES:
        raise FrameError(f"unknown data-structure type {body[0]}")
    return DsType(body[0]), _json_object(body[1:], "construct params")


def encode_construct_reply(ds: int) -> bytes:
    """CONSTRUCT's reply body: the new data structure's id."""
    return _I.pack(ds)


def decode_construct_reply(body: bytes) -> int:
    """The ds id in CONSTRUCT's reply body."""
    if len(body) != _I.size:
        raise FrameError(f"construct reply of {len(body)} bytes, not 4")
    return _I.unpack(body)[0]


def encode_stats_reply(stats: dict[str, Any]) -> bytes:
    """STATS' reply body: a JSON object."""
    return json.dumps(stats, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_stats_reply(body: bytes) -> dict[str, Any]:
    """The stats object in STATS' reply body."""
    return _json_object(body, "stats")


def encode_message(message: str) -> bytes:
    """The body of a reply whose status is not OK."""
    return message.encode("utf-8")


def decode_message(body: bytes) -> str:
    """The message of a reply whose status is not OK (never raises)."""
    return body.decode("utf-8", "replace")
