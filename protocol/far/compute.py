"""Arguments and replies of COMPUTE operations (AIFM's remote agent).

A COMPUTE body is `<H oplen> opname <H nlen> name` then the op's arguments
(bodies.py). One table gives, per op, the fixed little-endian fields of its
arguments and of its OK reply, and whether variable-length data follows:

    op        on         args                                    OK reply
    append    hashtable  <Q new_cas> data                       <Q cas>
    prepend   hashtable  <Q new_cas> data                       <Q cas>
    incr      hashtable  <Q delta> <Q new_cas>                  <Q value> <Q cas>
    decr      hashtable  <Q delta> <Q new_cas>                  <Q value> <Q cas>
    touch     hashtable  <I exptime>                            (empty)
    gat       hashtable  <I exptime>                            <I flags> <I exptime> <Q cas> value
    cas       hashtable  <Q expected> <I flags> <I exptime> <Q new_cas> value   (empty)
    clear     hashtable  (none)                                 (empty)
    gone      hashtable  (none)                                 <I lost> names
    sum       array      <Q start> <Q count>                    <Q sum mod 2^64>
    checksum  array      <Q start> <Q count>                    <I crc32>
    copy      array      <Q src> <Q dst> <Q count>              (empty)

`gone` drains the node's log of keys that left a hashtable without a
REMOVE (evicted, expired, dropped by a failed set): `names` is `<H len> key`
repeated (encode_names/decode_names), at most GONE_BATCH of them; `lost`
counts notices the bounded log had to drop since the last call. The client
removes those keys from its filter of far keys, knowing they were there.

Array ops take an empty name. Statuses other than OK (NOT_FOUND, EXISTS,
NON_NUMERIC, NO_SPACE, BAD_REQUEST) carry a message body, as for every op.
Decoders raise `FrameError` when the bytes do not match the op's shape.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from protocol.far.bodies import ITEM
from protocol.far.frames import FrameError

__all__ = [
    "COMPUTE_OPS",
    "GONE_BATCH",
    "ComputeSpec",
    "decode_compute_args",
    "decode_compute_reply",
    "decode_names",
    "encode_compute_args",
    "encode_compute_reply",
    "encode_names",
]

GONE_BATCH = 8192  # names one `gone` reply carries at most


class ComputeSpec(NamedTuple):
    """The wire shape of one compute op: fixed fields, then maybe data."""

    args: struct.Struct  # fixed argument fields after the name
    data: bool  # variable-length data follows the argument fields
    reply: struct.Struct  # fixed fields of the OK reply
    reply_data: bool  # variable-length data follows the reply fields


_NONE = struct.Struct("<")
_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_QQQ = struct.Struct("<QQQ")
_I = struct.Struct("<I")
_CAS = struct.Struct("<QIIQ")  # expected cas, flags, exptime, new cas

COMPUTE_OPS: dict[str, ComputeSpec] = {
    "append": ComputeSpec(_Q, True, _Q, False),
    "prepend": ComputeSpec(_Q, True, _Q, False),
    "incr": ComputeSpec(_QQ, False, _QQ, False),
    "decr": ComputeSpec(_QQ, False, _QQ, False),
    "touch": ComputeSpec(_I, False, _NONE, False),
    "gat": ComputeSpec(_I, False, ITEM, True),
    "cas": ComputeSpec(_CAS, True, _NONE, False),
    "clear": ComputeSpec(_NONE, False, _NONE, False),
    "gone": ComputeSpec(_NONE, False, _I, True),
    "sum": ComputeSpec(_QQ, False, _Q, False),
    "checksum": ComputeSpec(_QQ, False, _I, False),
    "copy": ComputeSpec(_QQQ, False, _NONE, False),
}


def _spec(op: str) -> ComputeSpec:
    spec = COMPUTE_OPS.get(op)
    if spec is None:
        raise FrameError(f"unknown compute op {op!r}")
    return spec


def _decode(fields: struct.Struct, has_data: bool, raw: bytes, what: str) -> tuple:
    size = fields.size
    if len(raw) < size or (len(raw) != size and not has_data):
        raise FrameError(f"{what} of {len(raw)} bytes, expected {size}{'+' if has_data else ''}")
    return fields.unpack_from(raw), raw[size:]


def encode_compute_args(op: str, *fields: int, data: bytes = b"") -> bytes:
    """The argument bytes of compute `op` (goes after the name)."""
    spec = _spec(op)
    if data and not spec.data:
        raise ValueError(f"compute op {op!r} takes no data")
    return spec.args.pack(*fields) + data


def decode_compute_args(op: str, args: bytes) -> tuple[tuple[int, ...], bytes]:
    """(fixed fields, data) of compute `op`'s arguments."""
    spec = _spec(op)
    return _decode(spec.args, spec.data, args, f"{op} arguments")


def encode_compute_reply(op: str, *fields: int, data: bytes = b"") -> bytes:
    """The OK reply body of compute `op`."""
    spec = _spec(op)
    if data and not spec.reply_data:
        raise ValueError(f"compute op {op!r} replies with no data")
    return spec.reply.pack(*fields) + data


def decode_compute_reply(op: str, body: bytes) -> tuple[tuple[int, ...], bytes]:
    """(fixed fields, data) of compute `op`'s OK reply body."""
    spec = _spec(op)
    return _decode(spec.reply, spec.reply_data, body, f"{op} reply")


_H = struct.Struct("<H")


def encode_names(names: list[bytes]) -> bytes:
    """`<H len> name` for each name (a `gone` reply's data)."""
    return b"".join(_H.pack(len(n)) + n for n in names)


def decode_names(data: bytes) -> list[bytes]:
    """The names of a `gone` reply's data; FrameError if they do not add up."""
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            raise FrameError("truncated name length")
        (n,) = _H.unpack_from(data, pos)
        pos += 2
        if pos + n > end:
            raise FrameError("truncated name")
        out.append(data[pos : pos + n])
        pos += n
    return out
