"""Offloaded operations (AIFM's remote agent): a table, name -> function.

Each op runs on one data structure, at the node, so a memcached verb that
changes a far item without reading it needs one round trip and no transfer
of the value (DESIGN.md §6). Wire shapes are protocol/far/compute.py's; the
semantics, on the stored item, are memcached 1.6's:

    hashtable  append, prepend  NOT_FOUND if missing; flags/exptime kept
               incr, decr       value: decimal u64 read like memcached's
                                safe_strtoull on the item data (leading
                                spaces, digits, then end/space/NUL); else
                                NON_NUMERIC. incr wraps at 2^64, decr floors
                                at 0. The new value is stored as its decimal
                                string, space-padded to the old length when
                                shorter (memcached rewrites it in place)
               touch, gat       set exptime (an expired one drops the item)
               cas              NOT_FOUND / EXISTS (cas differs) / OK stored
               clear            empties the table
    array      sum              u64 little-endian lanes, summed mod 2^64
               checksum         zlib.crc32 chained over elements in order
               copy             elements src.. -> dst.., like memmove

Array ops read missing elements as elem_size zero bytes (copy copies their
absence) and touch at most 2^20 elements and 64 MiB per call. Every op raises its
NodeError before it changes anything. TODO: a 64 MiB sum holds the event
loop ~0.5 s on the dev machine; slice long ops across loop iterations.
"""

from __future__ import annotations

import re
import struct
import sys
import zlib
from collections.abc import Callable

from farserver.errors import BadRequest, NonNumeric
from farserver.store import Array, HashTable, Item, Structure
from protocol.far import COMPUTE_OPS, GONE_BATCH, ITEM, DsType, Status, encode_names

__all__ = ["MAX_RANGE_BYTES", "MAX_RANGE_ELEMENTS", "REGISTRY", "Reply", "lookup", "strtoull"]

MAX_RANGE_BYTES = 64 * 1024 * 1024  # bytes one array op may read: a frame's worth
MAX_RANGE_ELEMENTS = 1 << 20  # elements one array op may visit
_ZEROS = bytes(1 << 20)  # missing elements' bytes, fed to crc32 a MiB at a time
_U64 = 1 << 64
_NUMBER = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")  # what strtoull consumes
_ENDS = frozenset(b" \t\n\v\f\r\0")  # bytes that may follow the digits
_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_I = struct.Struct("<I")

Reply = tuple[int, bytes, bytes]  # status, small head, value: the body, written unjoined
_OK: Reply = (Status.OK, b"", b"")
_NOT_FOUND: Reply = (Status.NOT_FOUND, b"", b"")
_EXISTS: Reply = (Status.EXISTS, b"", b"")


def strtoull(data: bytes) -> int | None:
    """memcached's safe_strtoull on an item's data (which ends in \\r\\n there)."""
    match = _NUMBER.match(data)
    if match is None:
        return None  # no digits
    end = match.end()
    if end < len(data) and data[end] not in _ENDS:
        return None  # garbage right after the digits
    digits = match.group(2).lstrip(b"0")
    if len(digits) > 20:
        return None  # ERANGE (and never int() a huge string)
    value = int(digits or b"0")
    if value >= _U64:
        return None  # ERANGE
    if match.group(1) == b"-":
        value = -value % _U64
        if value >= 1 << 63:
            return None  # "-1" would wrap to a huge number: memcached refuses
    return value


# -- hash-table ops: (table, key, fields, data, now) -> Reply ----------------------


def _append(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    return _concat(table, key, fields[0], now, lambda old: old + data)


def _prepend(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    return _concat(table, key, fields[0], now, lambda old: data + old)


def _concat(table: HashTable, key: bytes, new_cas: int, now: int, join) -> Reply:
    item = table.get(key, now)
    if item is None:
        return _NOT_FOUND
    table.put(key, Item(item.flags, item.exptime, new_cas, join(item.value)), now, forget=False)
    return Status.OK, _Q.pack(new_cas), b""


def _delta(table: HashTable, key: bytes, fields: tuple, now: int, incr: bool) -> Reply:
    delta, new_cas = fields
    item = table.get(key, now)
    if item is None:
        return _NOT_FOUND
    value = strtoull(item.value) if item.value else None
    if value is None:
        raise NonNumeric("cannot increment or decrement non-numeric value")
    value = (value + delta) % _U64 if incr else max(value - delta, 0)
    digits = (b"%d" % value).ljust(len(item.value))  # memcached's in-place rewrite pads
    table.put(key, Item(item.flags, item.exptime, new_cas, digits), now, forget=False)
    return Status.OK, _QQ.pack(value, new_cas), b""


def _incr(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    return _delta(table, key, fields, now, True)


def _decr(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    return _delta(table, key, fields, now, False)


def _retime(table: HashTable, key: bytes, exptime: int, now: int) -> Item | None:
    item = table.get(key, now)
    if item is None:
        return None
    if exptime and exptime <= now:
        table.remove(key, now)
    else:
        table.retime(key, item, exptime)
    return item


def _touch(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    return _NOT_FOUND if _retime(table, key, fields[0], now) is None else _OK


def _gat(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    item = _retime(table, key, fields[0], now)
    if item is None:
        return _NOT_FOUND
    return Status.OK, ITEM.pack(item.flags, fields[0], item.cas), item.value


def _cas(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    expected, flags, exptime, new_cas = fields
    item = table.get(key, now)
    if item is None:
        return _NOT_FOUND
    if item.cas != expected:
        return _EXISTS
    table.put(key, Item(flags, exptime, new_cas, data), now, forget=False)
    return _OK


def _clear(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    table.clear()
    return _OK


def _gone(table: HashTable, key: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    lost, keys = table.take_gone(GONE_BATCH)
    return Status.OK, _I.pack(lost), encode_names(keys)


# -- array ops: (array, name, fields, data, now) -> Reply --------------------------


def _range(array: Array, start: int, count: int) -> range:
    if count > MAX_RANGE_ELEMENTS or count * array.elem_size > MAX_RANGE_BYTES:
        raise BadRequest(
            f"{count} elements of {array.elem_size} bytes: over {MAX_RANGE_ELEMENTS} elements"
            f" or {MAX_RANGE_BYTES} bytes, split the range"
        )
    return array.check_range(start, count)


if sys.byteorder == "little":

    def _lanes_sum(value: bytes) -> int:
        return sum(memoryview(value).cast("Q"))

else:  # pragma: no cover - big-endian hosts

    def _lanes_sum(value: bytes) -> int:
        return sum(struct.unpack(f"<{len(value) // 8}Q", value))


def _sum(array: Array, name: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    if array.elem_size % 8:
        raise BadRequest(f"sum needs elements of a multiple of 8 bytes, not {array.elem_size}")
    span = _range(array, *fields)
    total = 0
    for _, value in array.elements(span):
        total += _lanes_sum(value)
    return Status.OK, _Q.pack(total % _U64), b""


def _crc_zeros(crc: int, nbytes: int) -> int:
    """`crc` chained over `nbytes` zero bytes, a MiB at a time."""
    with memoryview(_ZEROS) as zeros:
        while nbytes > 0:
            step = min(nbytes, len(zeros))
            crc = zlib.crc32(zeros[:step], crc)
            nbytes -= step
    return crc


def _checksum(array: Array, name: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    span = _range(array, *fields)
    size = array.elem_size
    crc = 0
    expect = span.start
    for index, value in array.elements(span):
        crc = _crc_zeros(crc, (index - expect) * size)  # missing elements read as zeros
        crc = zlib.crc32(value, crc)
        expect = index + 1
    crc = _crc_zeros(crc, (span.stop - expect) * size)
    return Status.OK, _I.pack(crc), b""


def _copy(array: Array, name: bytes, fields: tuple, data: bytes, now: int) -> Reply:
    src, dst, count = fields
    source = _range(array, src, count)
    array.check_range(dst, count)
    objects = array.objects
    snapshot = [objects.get(i) for i in source]  # memmove: read all, then write
    array.store_many(list(zip(range(dst, dst + count), snapshot, strict=True)))
    return _OK


Handler = Callable[..., Reply]

# Data-structure type -> op name -> handler. Names must be protocol.far's.
REGISTRY: dict[DsType, dict[str, Handler]] = {
    DsType.HASHTABLE: {
        "append": _append,
        "prepend": _prepend,
        "incr": _incr,
        "decr": _decr,
        "touch": _touch,
        "gat": _gat,
        "cas": _cas,
        "clear": _clear,
        "gone": _gone,
    },
    DsType.ARRAY: {"sum": _sum, "checksum": _checksum, "copy": _copy},
    DsType.BOX: {},
}
assert all(name in COMPUTE_OPS for ops in REGISTRY.values() for name in ops)


def lookup(structure: Structure, opname: str) -> Handler:
    """The handler of `opname` on `structure`'s type, else BadRequest."""
    handler = REGISTRY[structure.kind].get(opname)
    if handler is None:
        raise BadRequest(f"no compute op {opname!r} on a {structure.kind.name.lower()}")
    return handler
