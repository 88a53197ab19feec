"""protocol.far: the far-memory wire format (protocol/far/*.py docstrings).

Spec under test:
- a frame is `<I length>` then `<I req_id> <B op> <B status> <H 0> <I ds>`
  then length - 12 body bytes, little-endian; 12 <= length <= max_frame
  (default 64 MiB + 1 KiB); unknown ops, a non-zero status in a request, an
  unknown status in a reply and a non-zero reserved field are FrameErrors;
- FrameReader gives the same frames and errors whole, one byte at a time and
  with trailing data; errors are sticky; buffering stays below one frame;
  a large frame in small chunks is read in linear time;
- every body encoder round-trips through its decoder, and malformed bodies
  (short, trailing bytes, names over 250 bytes, bad JSON, unknown types,
  compute args of the wrong size) raise FrameError and nothing else;
- SCAN (op 10): request `<Q cursor> <I max_items> <I max_bytes>`, reply
  `<Q next_cursor> <I count>` then count entries `<H nlen> name <I flags>
  <I exptime> <Q cas> <I vlen> value`; a reply whose entries are cut short,
  overlong or followed by bytes is a FrameError.
"""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ProtocolError
from protocol.far import (
    COMPUTE_OPS,
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    MAX_NAME,
    SCAN_ENTRY_SIZE,
    VERSION,
    DsType,
    Frame,
    FrameError,
    FrameReader,
    Op,
    Status,
    decode_compute,
    decode_compute_args,
    decode_compute_reply,
    decode_construct,
    decode_construct_reply,
    decode_hello,
    decode_hello_reply,
    decode_index,
    decode_item,
    decode_message,
    decode_name,
    decode_names,
    decode_scan,
    decode_scan_reply,
    decode_stats_reply,
    decode_write,
    encode_compute,
    encode_compute_args,
    encode_compute_reply,
    encode_construct,
    encode_construct_reply,
    encode_frame,
    encode_header,
    encode_hello,
    encode_hello_reply,
    encode_index,
    encode_item,
    encode_message,
    encode_name,
    encode_names,
    encode_scan,
    encode_scan_entries,
    encode_scan_reply,
    encode_stats_reply,
    encode_write,
    item_header,
    scan_reply_head,
)

TRAILER = encode_frame(0xFFFFFFFF, Op.PING, 0, b"trailer")
TRAILER_FRAME = Frame(0xFFFFFFFF, Op.PING, 0, 0, b"trailer")


def read_all(data: bytes, chunk: int | None = None, **reader_args) -> list:
    """Frames from `data` fed in `chunk`-byte pieces, then ["FrameError", msg] if one."""
    reader = FrameReader(**reader_args)
    out: list = []
    step = chunk or max(len(data), 1)
    try:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            out.extend(reader)
    except FrameError as exc:
        out.append(["FrameError", str(exc)])
        with pytest.raises(FrameError):  # sticky
            reader.next()
    return out


def check(data: bytes, **reader_args) -> list:
    """read_all() whole, bytewise and with trailing data; assert they agree; return it."""
    whole = read_all(data, None, **reader_args)
    assert read_all(data, 1, **reader_args) == whole
    trailing = read_all(data + TRAILER, None, **reader_args)
    if whole and not isinstance(whole[-1], Frame):
        assert trailing == whole  # nothing after an error counts
    else:
        assert trailing == [*whole, TRAILER_FRAME]
    return whole


# -- frames ----------------------------------------------------------------


def test_frame_layout_is_the_documented_bytes():
    frame = encode_frame(0x01020304, Op.READ, 0x0A0B0C0D, b"xyz", status=Status.EXISTS)
    assert frame == (
        b"\x0f\x00\x00\x00"  # length: 12 + 3
        b"\x04\x03\x02\x01"  # req_id
        b"\x04"  # op READ
        b"\x05"  # status EXISTS
        b"\x00\x00"  # reserved
        b"\x0d\x0c\x0b\x0a"  # ds
        b"xyz"
    )
    assert encode_header(0x01020304, Op.READ, 0x0A0B0C0D, 3, Status.EXISTS) + b"xyz" == frame
    assert HEADER_SIZE == 16
    assert DEFAULT_MAX_FRAME == 64 * 1024 * 1024 + 1024


def test_frames_whole_bytewise_trailing():
    data = (
        encode_frame(1, Op.HELLO, 0, encode_hello(VERSION, b"s3cret"))
        + encode_frame(2, Op.READ, 7, encode_name(b"key"))
        + encode_frame(0xFFFFFFFF, Op.STATS, 0)
        + encode_frame(4, Op.WRITE, 7, encode_write(b"k", b"v" * 300, 1, 2, 3))
    )
    frames = check(data)
    assert [(f.req_id, f.op, f.ds) for f in frames] == [
        (1, Op.HELLO, 0),
        (2, Op.READ, 7),
        (0xFFFFFFFF, Op.STATS, 0),
        (4, Op.WRITE, 7),
    ]
    assert frames[2].body == b""
    assert decode_write(frames[3].body) == (b"k", 1, 2, 3, b"v" * 300)


def test_replies_carry_every_status():
    data = b"".join(encode_frame(i, Op.READ, 1, b"m", status=s) for i, s in enumerate(Status))
    frames = check(data, replies=True)
    assert [f.status for f in frames] == list(Status)


def test_every_op_is_accepted():
    data = b"".join(encode_frame(op, op, 0, b"") for op in Op)
    assert [f.op for f in check(data)] == list(Op)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack("<I", 11) + b"\0" * 11, "shorter than the 12-byte header"),
        (struct.pack("<I", 0), "shorter than the 12-byte header"),
        (struct.pack("<I", DEFAULT_MAX_FRAME + 1), "over the limit"),
        (struct.pack("<I", 0xFFFFFFFF), "over the limit"),
        (struct.pack("<IIBBHI", 12, 1, 0, 0, 0, 0), "unknown op 0"),
        (struct.pack("<IIBBHI", 12, 1, 11, 0, 0, 0), "unknown op 11"),
        (struct.pack("<IIBBHI", 12, 1, 255, 0, 0, 0), "unknown op 255"),
        (struct.pack("<IIBBHI", 12, 1, Op.PING, 1, 0, 0), "status 1 in a request"),
        (struct.pack("<IIBBHI", 12, 1, Op.PING, 0, 1, 0), "reserved field is 1"),
        # the header is judged before its body arrives
        (struct.pack("<IIBBHI", 1000, 1, 99, 0, 0, 0), "unknown op 99"),
    ],
)
def test_malformed_headers_raise(data, message):
    out = check(data)
    assert len(out) == 1 and out[0][0] == "FrameError" and message in out[0][1], out


def test_unknown_status_in_a_reply_raises():
    out = check(struct.pack("<IIBBHI", 12, 1, Op.READ, 9, 0, 0), replies=True)
    assert out == [["FrameError", "unknown status 9 in a reply"]]


def test_max_frame_is_a_parameter():
    ok = encode_frame(1, Op.PING, 0, b"x" * 88)  # length 100
    assert check(ok, max_frame=100)[0].body == b"x" * 88
    out = check(ok, max_frame=99)
    assert out == [["FrameError", "frame length 100 is over the limit of 99"]]
    with pytest.raises(ValueError):
        FrameReader(max_frame=11)


def test_frame_error_is_a_protocol_error():
    assert issubclass(FrameError, ProtocolError)


def test_bad_length_is_caught_from_four_bytes():
    reader = FrameReader()
    reader.feed(struct.pack("<I", 5))
    with pytest.raises(FrameError):
        reader.next()


def test_fed_twice_without_draining():
    reader = FrameReader()
    a, b = encode_frame(1, Op.PING, 0, b"a"), encode_frame(2, Op.PING, 0, b"b")
    reader.feed(a[:5])
    reader.feed(a[5:] + b[:3])
    reader.feed(b[3:])
    assert [f.body for f in reader] == [b"a", b"b"]
    assert reader.buffered == 0


def test_buffered_counts_unreturned_bytes():
    reader = FrameReader()
    frame = encode_frame(1, Op.PING, 0, b"x" * 100)
    reader.feed(frame + frame[:50])
    assert reader.buffered == len(frame) + 50
    assert reader.next() is not None
    assert reader.next() is None
    assert reader.buffered == 50


def test_large_frame_in_small_chunks_is_linear():
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB
    data = encode_frame(9, Op.PING, 0, body)
    reader = FrameReader()
    frames = []
    start = time.perf_counter()
    for i in range(0, len(data), 1460):  # one TCP segment at a time
        reader.feed(data[i : i + 1460])
        frames.extend(reader)
    elapsed = time.perf_counter() - start
    assert len(frames) == 1 and frames[0].body == body
    assert elapsed < 2.0, f"8 MiB in 1460-byte chunks took {elapsed:.2f} s: not linear"


def test_memoryview_and_bytearray_input():
    data = encode_frame(3, Op.PING, 0, b"abc")
    reader = FrameReader()
    reader.feed(memoryview(data)[:7])
    reader.feed(bytearray(data[7:]))
    assert reader.next() == Frame(3, Op.PING, 0, 0, b"abc")


# -- bodies ------------------------------------------------------------------


def test_hello_round_trips():
    assert decode_hello(encode_hello(VERSION, b"\x00secret\xff")) == (VERSION, b"\x00secret\xff")
    assert decode_hello(encode_hello(7)) == (7, b"")
    assert decode_hello_reply(encode_hello_reply(VERSION, "node é")) == (VERSION, "node é")


@pytest.mark.parametrize(
    ("ds_type", "params"),
    [
        (DsType.BOX, {}),
        (DsType.ARRAY, {"elem_size": 8192, "length": 32768}),
        (DsType.HASHTABLE, {"evict": True}),
    ],
)
def test_construct_round_trips(ds_type, params):
    assert decode_construct(encode_construct(ds_type, params)) == (ds_type, params)
    assert decode_construct_reply(encode_construct_reply(0xFFFFFFFF)) == 0xFFFFFFFF


def test_name_bodies_round_trip():
    for name in (b"", b"k", b"\x00\xff" * 125, encode_index(2**64 - 1)):
        assert decode_name(encode_name(name)) == name
    assert decode_index(encode_index(12345678901234)) == 12345678901234
    assert encode_index(1) == b"\x01" + b"\x00" * 7


def test_write_and_item_round_trip():
    body = encode_write(b"key", b"value\r\n", 0xFFFFFFFF, 1700000000, 2**64 - 1)
    assert decode_write(body) == (b"key", 0xFFFFFFFF, 1700000000, 2**64 - 1, b"value\r\n")
    assert decode_write(encode_write(b"", b"")) == (b"", 0, 0, 0, b"")
    item = encode_item(b"v" * 10, 5, 6, 7)
    assert item == item_header(5, 6, 7) + b"v" * 10
    assert decode_item(item) == (5, 6, 7, b"v" * 10)


def test_compute_envelope_round_trips():
    body = encode_compute("incr", b"counter", encode_compute_args("incr", 5, 99))
    opname, name, args = decode_compute(body)
    assert (opname, name) == ("incr", b"counter")
    assert decode_compute_args("incr", args) == ((5, 99), b"")
    assert decode_compute(encode_compute("sum", b"", b"")) == ("sum", b"", b"")


_ARGS = {
    "append": ((7,), b"tail"),
    "prepend": ((7,), b"head"),
    "incr": ((1, 2), b""),
    "decr": ((2**64 - 1, 0), b""),
    "touch": ((1700000000,), b""),
    "gat": ((0,), b""),
    "cas": ((1, 2, 3, 4), b"new"),
    "clear": ((), b""),
    "gone": ((), b""),
    "sum": ((0, 10), b""),
    "checksum": ((5, 1), b""),
    "copy": ((1, 2, 3), b""),
}
_REPLIES = {
    "append": ((8,), b""),
    "prepend": ((8,), b""),
    "incr": ((10, 11), b""),
    "decr": ((0, 11), b""),
    "touch": ((), b""),
    "gat": ((1, 2, 3), b"value"),
    "cas": ((), b""),
    "clear": ((), b""),
    "gone": ((3,), encode_names([b"k1", b"", b"x" * 250])),
    "sum": ((2**64 - 1,), b""),
    "checksum": ((0xDEADBEEF,), b""),
    "copy": ((), b""),
}


@pytest.mark.parametrize("op", sorted(COMPUTE_OPS))
def test_compute_args_and_replies_round_trip(op):
    fields, data = _ARGS[op]
    assert decode_compute_args(op, encode_compute_args(op, *fields, data=data)) == (fields, data)
    fields, data = _REPLIES[op]
    assert decode_compute_reply(op, encode_compute_reply(op, *fields, data=data)) == (fields, data)


def test_gone_names_round_trip_and_truncation_is_an_error():
    names = [b"a", b"", b"key:1", bytes(range(250))]
    assert decode_names(encode_names(names)) == names
    assert decode_names(b"") == []
    with pytest.raises(FrameError):
        decode_names(encode_names([b"abc"])[:-1])
    with pytest.raises(FrameError):
        decode_names(b"\x01")


def test_scan_op_is_ten():
    assert Op.SCAN == 10 and Op.PING == 9  # on the wire: never renumbered


def test_scan_request_is_the_documented_bytes():
    body = encode_scan(0x0102030405060708, 0x0A0B0C0D, 0x11121314)
    assert body == bytes.fromhex("08070605040302010d0c0b0a14131211")
    assert decode_scan(body) == (0x0102030405060708, 0x0A0B0C0D, 0x11121314)
    assert decode_scan(encode_scan(0, 1, 0)) == (0, 1, 0)
    assert decode_scan(encode_scan(2**64 - 1, 2**32 - 1, 2**32 - 1)) == (
        2**64 - 1,
        2**32 - 1,
        2**32 - 1,
    )


def test_scan_reply_is_the_documented_bytes():
    body = encode_scan_reply(7, [(b"ab", 1, 2, 3, b"xyz"), (b"", 0, 0, 0, b"")])
    assert body == (
        struct.pack("<QI", 7, 2)
        + struct.pack("<H", 2)
        + b"ab"
        + struct.pack("<IIQI", 1, 2, 3, 3)
        + b"xyz"
        + struct.pack("<H", 0)
        + struct.pack("<IIQI", 0, 0, 0, 0)
    )
    assert len(body) == 12 + 2 * SCAN_ENTRY_SIZE + 2 + 3 and SCAN_ENTRY_SIZE == 22
    assert (
        scan_reply_head(7, 2) + encode_scan_entries([(b"ab", 1, 2, 3, b"xyz"), (b"", 0, 0, 0, b"")])
        == body
    )


def test_scan_reply_round_trips():
    entries = [
        (b"k" * MAX_NAME, 0xFFFFFFFF, 0xFFFFFFFF, 2**64 - 1, bytes(range(256)) * 40),
        (b"", 0, 0, 0, b""),
        (encode_index(2**64 - 1), 0, 0, 0, b"\r\nEND\r\n"),
        (b"\x00\xff", 5, 1700000000, 9, b"\x00"),
    ]
    assert decode_scan_reply(encode_scan_reply(2**64 - 1, entries)) == (2**64 - 1, entries)
    assert decode_scan_reply(encode_scan_reply(0, [])) == (0, [])
    with pytest.raises(ValueError):
        encode_scan_reply(1, [(b"k" * (MAX_NAME + 1), 0, 0, 0, b"")])


_ONE_ENTRY = encode_scan_reply(3, [(b"key", 1, 2, 3, b"value")])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        _ONE_ENTRY[:11],  # head cut
        struct.pack("<QI", 0, 1),  # count 1, no entry
        _ONE_ENTRY[:13],  # name length cut
        _ONE_ENTRY[:16],  # name cut
        _ONE_ENTRY[:30],  # entry header cut
        _ONE_ENTRY[:-1],  # value cut
        _ONE_ENTRY + b"\0",  # trailing byte
        struct.pack("<QI", 0, 0) + b"x",  # count 0, then bytes
        struct.pack("<QI", 0, 2) + _ONE_ENTRY[12:],  # count says 2, one entry
        struct.pack("<QIH", 0, 1, 251) + b"k" * 251 + struct.pack("<IIQI", 0, 0, 0, 0),
        struct.pack("<QIH", 0, 1, 0) + struct.pack("<IIQI", 0, 0, 0, 2**32 - 1),  # huge vlen
        struct.pack("<QI", 0, 2**32 - 1),  # huge count
    ],
)
def test_malformed_scan_replies_raise_frame_error(body):
    with pytest.raises(FrameError):
        decode_scan_reply(body)


@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_malformed_scan_requests_raise_frame_error(size):
    with pytest.raises(FrameError):
        decode_scan(b"\0" * size)


def test_stats_and_message_round_trip():
    stats = {"bytes": 1, "limit_bytes": 2, "node": "n"}
    assert decode_stats_reply(encode_stats_reply(stats)) == stats
    assert decode_message(encode_message("no data structure 3")) == "no data structure 3"
    assert decode_message(b"\xff") == "\ufffd"


def test_encoders_refuse_long_names():
    with pytest.raises(ValueError):
        encode_name(b"k" * (MAX_NAME + 1))
    with pytest.raises(ValueError):
        encode_write(b"k" * (MAX_NAME + 1), b"")
    with pytest.raises(ValueError):
        encode_compute("", b"k")
    with pytest.raises(ValueError):
        encode_compute_args("incr", 1, 2, data=b"x")


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        (decode_name, b""),
        (decode_name, b"\x05\x00abc"),  # short
        (decode_name, b"\x01\x00ab"),  # trailing byte
        (decode_name, struct.pack("<H", 251) + b"k" * 251),  # over 250
        (decode_write, b"\x01"),
        (decode_write, b"\x01\x00k" + b"\0" * 15),  # item header short
        (decode_write, struct.pack("<H", 300) + b"k" * 316),
        (decode_item, b"\0" * 15),
        (decode_compute, b""),
        (decode_compute, b"\x00\x00\x00\x00"),  # empty op name
        (decode_compute, b"\x04\x00incr"),  # no name length
        (decode_compute, b"\x04\x00inc\xff\x00\x00"),  # not ASCII
        (decode_compute, b"\x04\x00incr\x05\x00abc"),  # name short
        (decode_compute, struct.pack("<H", 33) + b"x" * 33 + b"\0\0"),  # op name too long
        (decode_construct, b""),
        (decode_construct, b"\x04{}"),  # unknown type
        (decode_construct, b"\x00{}"),
        (decode_construct, b"\x01"),  # no JSON
        (decode_construct, b"\x01[1]"),  # not an object
        (decode_construct, b"\x01{\xff}"),  # not UTF-8
        (decode_construct, b"\x01" + b"[" * 100_000),  # nesting
        (decode_construct_reply, b"\0\0\0"),
        (decode_hello, b"\x01"),
        (decode_hello_reply, b""),
        (decode_hello_reply, b"\x01\x00\xff"),
        (decode_stats_reply, b"nope"),
        (decode_index, b"\0" * 7),
    ],
)
def test_malformed_bodies_raise_frame_error(decode, body):
    with pytest.raises(FrameError):
        decode(body)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("incr", b"\0" * 15),
        ("incr", b"\0" * 17),  # incr takes no data
        ("append", b"\0" * 7),
        ("cas", b"\0" * 23),
        ("clear", b"x"),
        ("nope", b""),
    ],
)
def test_malformed_compute_args_raise_frame_error(op, args):
    with pytest.raises(FrameError):
        decode_compute_args(op, args)


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("incr", b"\0" * 15),
        ("append", b"\0" * 9),  # append's reply has no data
        ("gat", b"\0" * 15),
        ("checksum", b"\0" * 8),
        ("touch", b"x"),
        ("nope", b""),
    ],
)
def test_malformed_compute_replies_raise_frame_error(op, body):
    with pytest.raises(FrameError):
        decode_compute_reply(op, body)


# -- properties --------------------------------------------------------------

_frames = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.sampled_from(list(Op)),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=300),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(_frames, st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_any_chunking_gives_the_same_frames(frames, cuts):
    data = b"".join(encode_frame(r, op, ds, body) for r, op, ds, body in frames)
    reader = FrameReader()
    got = []
    pos = i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        reader.feed(data[pos : pos + step])
        got.extend(reader)
        pos += step
        i += 1
    assert got == [Frame(r, op, 0, ds, body) for r, op, ds, body in frames]
    assert reader.buffered == 0


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=2000),
    st.lists(st.integers(1, 300), min_size=1, max_size=10),
    st.integers(12, 600),
    st.booleans(),
)
def test_garbage_raises_only_frame_error_and_stays_bounded(data, cuts, max_frame, replies):
    reader = FrameReader(max_frame, replies=replies)
    pos = i = 0
    try:
        while pos < len(data):
            step = cuts[i % len(cuts)]
            reader.feed(data[pos : pos + step])
            pos += step
            i += 1
            for frame in reader:
                assert len(frame.body) <= max_frame - 12
            assert reader.buffered < 4 + max_frame
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_bodies_raise_only_frame_error(body):
    for decode in (
        decode_name,
        decode_write,
        decode_item,
        decode_compute,
        decode_construct,
        decode_construct_reply,
        decode_hello,
        decode_hello_reply,
        decode_stats_reply,
        decode_index,
        decode_scan,
        decode_scan_reply,
    ):
        try:
            decode(body)
        except FrameError:
            pass
    for op in COMPUTE_OPS:
        for decode in (decode_compute_args, decode_compute_reply):
            try:
                decode(op, body)
            except FrameError:
                pass
