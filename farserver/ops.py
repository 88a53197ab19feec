"""The node's request handlers: one per op, in one table (HELLO is server.py's).

A handler takes the node and a request Frame, decodes the body first (so a
malformed one closes the connection whatever its ds), and returns `(status, head,
value)`: the reply body is head + value, written as two pieces so a large
value is never copied into a joined buffer. A NodeError it raises becomes a
reply with that status (server.py); a FrameError (a body without its shape)
closes the connection. Handlers never park and never do I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from farserver import compute
from farserver.compute import Reply
from farserver.errors import BadRequest
from farserver.node import Node
from protocol.far import (
    Frame,
    Op,
    Status,
    decode_compute,
    decode_compute_args,
    decode_construct,
    decode_name,
    decode_scan,
    decode_write,
    encode_construct_reply,
    encode_scan_entries,
    encode_stats_reply,
    scan_reply_head,
)

__all__ = ["HANDLERS", "Handler", "Reply"]

Handler = Callable[[Node, Frame], Reply]

_OK: Reply = (Status.OK, b"", b"")
_NOT_FOUND: Reply = (Status.NOT_FOUND, b"", b"")


def _construct(node: Node, frame: Frame) -> Reply:
    ds_type, params = decode_construct(frame.body)
    return Status.OK, encode_construct_reply(node.construct(ds_type, params)), b""


def _destruct(node: Node, frame: Frame) -> Reply:
    node.destruct(frame.ds)
    return _OK


def _read(node: Node, frame: Frame) -> Reply:
    node.reads += 1
    name = decode_name(frame.body)  # a malformed body closes, whatever the ds
    hit = node.structure(frame.ds).read(name, node.now)
    if hit is None:
        node.misses += 1
        return _NOT_FOUND
    return Status.OK, hit[0], hit[1]


def _write(node: Node, frame: Frame) -> Reply:
    node.writes += 1
    name, flags, exptime, cas, value = decode_write(frame.body)
    node.structure(frame.ds).write(name, flags, exptime, cas, value, node.now)
    return _OK


def _remove(node: Node, frame: Frame) -> Reply:
    node.removes += 1
    name = decode_name(frame.body)
    found = node.structure(frame.ds).remove(name, node.now)
    return _OK if found else _NOT_FOUND


def _compute(node: Node, frame: Frame) -> Reply:
    node.computes += 1
    opname, name, args = decode_compute(frame.body)
    structure = node.structure(frame.ds)
    handler = compute.lookup(structure, opname)
    fields, data = decode_compute_args(opname, args)
    return handler(structure, name, fields, data, node.now)


def _scan(node: Node, frame: Frame) -> Reply:
    node.scans += 1
    cursor, max_items, max_bytes = decode_scan(frame.body)
    structure = node.structure(frame.ds)
    if max_items == 0:
        raise BadRequest("scan with max_items 0")
    next_cursor, entries = structure.scan(cursor, max_items, max_bytes, node.now)
    return Status.OK, scan_reply_head(next_cursor, len(entries)), encode_scan_entries(entries)


def _stats(node: Node, frame: Frame) -> Reply:
    return Status.OK, encode_stats_reply(node.stats()), b""


def _ping(node: Node, frame: Frame) -> Reply:
    return Status.OK, b"", frame.body


HANDLERS: dict[int, Handler] = {
    Op.CONSTRUCT: _construct,
    Op.DESTRUCT: _destruct,
    Op.READ: _read,
    Op.WRITE: _write,
    Op.REMOVE: _remove,
    Op.COMPUTE: _compute,
    Op.STATS: _stats,
    Op.PING: _ping,
    Op.SCAN: _scan,
}
