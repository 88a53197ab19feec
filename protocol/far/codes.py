"""The far protocol's numbering: operations, reply statuses, data-structure types.

Every number here is on the wire; never renumber one. Values that are not
listed are protocol errors (`FrameError`), except compute operation names,
which the node's registry judges (an unknown one is a BAD_REQUEST reply).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["MAX_NAME", "VERSION", "DsType", "Op", "Status"]

VERSION = 1  # HELLO's protocol version; a node refuses any other
MAX_NAME = 250  # bytes of an object name (memcached's key limit)


class Op(IntEnum):
    """A frame's operation (u8); a reply echoes its request's."""

    HELLO = 1  # <H version> secret        -> <H version> node-name
    CONSTRUCT = 2  # <B type> params-json      -> <I ds>
    DESTRUCT = 3  # (empty, header ds)        -> (empty)
    READ = 4  # <H nlen> name              -> <I flags> <I exptime> <Q cas> value
    WRITE = 5  # <H nlen> name <I flags> <I exptime> <Q cas> value -> (empty)
    REMOVE = 6  # <H nlen> name              -> (empty)
    COMPUTE = 7  # <H oplen> op <H nlen> name args -> op-specific
    STATS = 8  # (empty)                    -> stats-json
    PING = 9  # anything                    -> the same bytes
    SCAN = 10  # <Q cursor> <I max_items> <I max_bytes> -> <Q next_cursor> <I count> entries


class Status(IntEnum):
    """A reply's outcome (u8); always OK (0) in a request."""

    OK = 0
    NOT_FOUND = 1  # no such object (or it expired), or no such ds (gone with a restart)
    NO_SPACE = 2  # over the node's memory limit and nothing evictable
    BAD_REQUEST = 3  # well-formed frame the node cannot apply (bad params, bad index)
    ERROR = 4  # the node failed (a bug); the connection closes after it
    EXISTS = 5  # cas: the item changed since it was read
    NOT_STORED = 6  # a conditional write did not happen
    AUTH_FAILED = 7  # HELLO's secret is wrong; the connection closes after it
    NON_NUMERIC = 8  # incr/decr on a value that is not a decimal u64


class DsType(IntEnum):
    """A data structure's type, CONSTRUCT's first body byte (u8)."""

    BOX = 1  # object id (u64) -> bytes
    ARRAY = 2  # index < length -> exactly elem_size bytes
    HASHTABLE = 3  # key (<= 250 bytes) -> item (flags, exptime, cas, value)
