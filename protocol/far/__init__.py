"""The far-memory wire format, sans-I/O, for the runtime's client and the node.

    frames.py    length-prefixed frames, FrameReader, FrameError
    codes.py     Op, Status, DsType numbers
    bodies.py    one encoder/decoder per request and reply body
    compute.py   arguments and replies of offloaded (COMPUTE) operations

Frames carry a client-chosen request id, so one connection has many
requests in flight and replies may come back in any order (DESIGN.md §7).
Anything malformed raises `FrameError` (a `protocol.ProtocolError`); the
owner of the connection closes it, and nothing else is affected.
"""

from protocol.far.bodies import (
    INDEX,
    ITEM,
    MAX_OPNAME,
    decode_compute,
    decode_construct,
    decode_construct_reply,
    decode_hello,
    decode_hello_reply,
    decode_index,
    decode_item,
    decode_message,
    decode_name,
    decode_stats_reply,
    decode_write,
    encode_compute,
    encode_construct,
    encode_construct_reply,
    encode_hello,
    encode_hello_reply,
    encode_index,
    encode_item,
    encode_message,
    encode_name,
    encode_stats_reply,
    encode_write,
    item_header,
    secret_from_file,
)
from protocol.far.codes import MAX_NAME, VERSION, DsType, Op, Status
from protocol.far.compute import (
    COMPUTE_OPS,
    GONE_BATCH,
    ComputeSpec,
    decode_compute_args,
    decode_compute_reply,
    decode_names,
    encode_compute_args,
    encode_compute_reply,
    encode_names,
)
from protocol.far.frames import (
    DEFAULT_MAX_FRAME,
    HEADER,
    HEADER_SIZE,
    Frame,
    FrameError,
    FrameReader,
    encode_frame,
    encode_header,
)

__all__ = [
    "COMPUTE_OPS",
    "DEFAULT_MAX_FRAME",
    "HEADER",
    "HEADER_SIZE",
    "INDEX",
    "ITEM",
    "MAX_NAME",
    "MAX_OPNAME",
    "VERSION",
    "ComputeSpec",
    "DsType",
    "Frame",
    "FrameError",
    "FrameReader",
    "GONE_BATCH",
    "Op",
    "Status",
    "decode_compute",
    "decode_compute_args",
    "decode_compute_reply",
    "decode_construct",
    "decode_construct_reply",
    "decode_hello",
    "decode_hello_reply",
    "decode_index",
    "decode_item",
    "decode_message",
    "decode_name",
    "decode_names",
    "decode_stats_reply",
    "decode_write",
    "encode_compute",
    "encode_compute_args",
    "encode_compute_reply",
    "encode_construct",
    "encode_construct_reply",
    "encode_frame",
    "encode_header",
    "encode_hello",
    "encode_hello_reply",
    "encode_index",
    "encode_item",
    "encode_message",
    "encode_name",
    "encode_names",
    "encode_stats_reply",
    "encode_write",
    "item_header",
    "secret_from_file",
]
