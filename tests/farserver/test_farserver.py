"""farserver, the far-memory node, as a real process over TCP (farserver/*.py docstrings).

Spec under test:
- `python -m farserver -p 0 -l 127.0.0.1` logs `farserver listening on
  127.0.0.1:PORT`; SIGTERM drains written replies and exits 0;
- HELLO comes first; with --secret-file only the secret passes (else
  AUTH_FAILED and close); any other op first closes the connection;
- CONSTRUCT/DESTRUCT of boxes, arrays and hash tables with node-wide ids
  (an unknown ds is NOT_FOUND: its objects are gone);
  READ/WRITE/REMOVE on each, with their validity rules (BAD_REQUEST);
- hash-table items expire at their absolute exptime (lazily and by sweep);
  {"evict": true} tables lose their LRU items under -m, byte-exact survivors;
  boxes, arrays and plain tables get NO_SPACE and keep what they had;
- every COMPUTE op with memcached semantics (incr wraps, decr floors,
  NON_NUMERIC, cas EXISTS), and the array reductions;
- STATS, PING, pipelining matched by req_id; garbage closes only its own
  connection while others keep working.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib

import pytest
from farserver_proc import FarClient, FarNode

from protocol.far import (
    VERSION,
    DsType,
    Frame,
    Op,
    Status,
    decode_compute_reply,
    decode_hello_reply,
    decode_item,
    decode_message,
    decode_names,
    decode_stats_reply,
    encode_compute,
    encode_compute_args,
    encode_construct,
    encode_frame,
    encode_hello,
    encode_index,
    encode_name,
    encode_write,
)

STATS_KEYS = {
    "bytes",
    "limit_bytes",
    "objects",
    "evictions",
    "reads",
    "writes",
    "removes",
    "computes",
    "structures",
    "connections",
    "expired",
    "scans",
}


@pytest.fixture(scope="module")
def node():
    """One farserver for the tests that need no special flags."""
    server = FarNode()
    yield server
    assert server.stop() == 0


@pytest.fixture
def client(node):
    """A connection to `node`, HELLO done."""
    c = node.client()
    yield c
    c.close()


@pytest.fixture
def table(client):
    """A fresh non-evicting hash table on `node`."""
    return client.construct(DsType.HASHTABLE)


# -- helpers ---------------------------------------------------------------


def write(c: FarClient, ds: int, name: bytes, value: bytes, flags=0, exptime=0, cas=0) -> Frame:
    """WRITE one object."""
    return c.call(Op.WRITE, ds, encode_write(name, value, flags, exptime, cas))


def read(c: FarClient, ds: int, name: bytes) -> Frame:
    """READ one object."""
    return c.call(Op.READ, ds, encode_name(name))


def value_of(c: FarClient, ds: int, name: bytes) -> bytes | None:
    """The stored value, or None on NOT_FOUND."""
    frame = read(c, ds, name)
    if frame.status == Status.NOT_FOUND:
        return None
    assert frame.status == Status.OK, frame
    return decode_item(frame.body)[3]


def compute(c: FarClient, ds: int, op: str, name: bytes, *fields: int, data=b"") -> Frame:
    """One COMPUTE request."""
    return c.call(
        Op.COMPUTE, ds, encode_compute(op, name, encode_compute_args(op, *fields, data=data))
    )


def stats(c: FarClient) -> dict:
    """The node's STATS object."""
    frame = c.call(Op.STATS)
    assert frame.status == Status.OK
    return decode_stats_reply(frame.body)


def idx(i: int) -> bytes:
    """A box or array name."""
    return encode_index(i)


# -- process and session ---------------------------------------------------


def test_startup_line_and_sigterm_drain_exit_zero():
    server = FarNode()
    assert server.lines[0] == f"farserver listening on 127.0.0.1:{server.port}".encode()
    c = server.client()
    box = c.construct(DsType.BOX)
    big = os.urandom(4 * 1024 * 1024)
    assert write(c, box, idx(1), big).status == Status.OK
    # 16 x 4 MiB of replies queued in one batch, then SIGTERM: all of it still arrives.
    c.sock.sendall(
        b"".join(encode_frame(100 + i, Op.READ, box, encode_name(idx(1))) for i in range(16))
    )
    first = c.sock.recv(1)
    server.terminate()
    c.reader.feed(first)
    replies = [c.recv() for _ in range(16)]
    assert [r.req_id for r in replies] == [100 + i for i in range(16)]
    assert all(decode_item(r.body)[3] == big for r in replies)
    assert c.closed()
    assert server.stop() == 0


def test_node_stops_when_its_parent_lifeline_closes():
    server = FarNode()
    assert "--parent-fd" in server.proc.args
    c = server.client()
    assert c.construct(DsType.BOX)
    server._close_lifeline()  # as the parent's exit would: the pipe reads end-of-file
    t0 = time.monotonic()
    assert server.proc.wait(5) == 0
    assert time.monotonic() - t0 < 2
    assert any(b"parent process exited; stopping" in line for line in server.lines)
    assert c.closed()


def test_a_bad_parent_fd_is_a_usage_error():
    run = subprocess.run(
        [sys.executable, "-m", "farserver", "-p", "0", "--parent-fd", "987"],
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 2 and b"--parent-fd 987: Bad file descriptor" in run.stderr


def test_hello_reply_names_the_node(node):
    c = node.client(hello=False)
    frame = c.call(Op.HELLO, 0, encode_hello(VERSION, b"anything goes"))
    assert frame.status == Status.OK
    version, name = decode_hello_reply(frame.body)
    assert version == VERSION and name.startswith(f"farserver 127.0.0.1:{node.port} ")
    c.close()
    with FarNode() as other:  # every instance has its own name
        assert (
            decode_hello_reply(
                other.client(hello=False).call(Op.HELLO, 0, encode_hello(VERSION)).body
            )[1]
            != name
        )


def test_op_before_hello_closes(node):
    c = node.client(hello=False)
    c.send(Op.PING, 0, b"x")
    assert c.closed()
    assert node.client().call(Op.PING, 0, b"ok").body == b"ok"


def test_wrong_version_is_refused_and_closed(node):
    c = node.client(hello=False)
    frame = c.call(Op.HELLO, 0, encode_hello(VERSION + 1))
    assert frame.status == Status.BAD_REQUEST
    assert c.closed()


def test_secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"correct horse\n")
    with FarNode("--secret-file", str(path)) as server:
        good = server.client(secret=b"correct horse")
        assert good.call(Op.PING, 0, b"hi").body == b"hi"
        bad = server.client(hello=False)
        frame = bad.call(Op.HELLO, 0, encode_hello(VERSION, b"correct horsf"))
        assert frame.status == Status.AUTH_FAILED
        assert bad.closed()
        none = server.client(hello=False)
        assert none.call(Op.HELLO, 0, encode_hello(VERSION)).status == Status.AUTH_FAILED
        assert none.closed()
        assert good.call(Op.PING, 0, b"still").body == b"still"
        assert server.stop() == 0


# -- construct / destruct --------------------------------------------------


def test_construct_ids_are_node_wide_and_destruct_frees(node, client):
    box = client.construct(DsType.BOX)
    other = node.client()
    arr = other.construct(DsType.ARRAY, elem_size=8, length=4)
    assert box != arr and 0 not in (box, arr)
    assert write(other, box, idx(1), b"shared").status == Status.OK
    assert value_of(client, box, idx(1)) == b"shared"
    before = stats(client)
    assert client.call(Op.DESTRUCT, box).status == Status.OK
    after = stats(client)
    assert after["structures"] == before["structures"] - 1
    assert after["bytes"] < before["bytes"]
    frame = read(client, box, idx(1))  # its objects are gone with it
    assert frame.status == Status.NOT_FOUND
    assert decode_message(frame.body) == f"no data structure {box}"
    assert write(client, box, idx(1), b"x").status == Status.NOT_FOUND
    assert client.call(Op.DESTRUCT, box).status == Status.NOT_FOUND
    assert client.call(Op.DESTRUCT, arr).status == Status.OK
    other.close()


@pytest.mark.parametrize(
    ("ds_type", "params"),
    [
        (DsType.ARRAY, {"elem_size": 8}),
        (DsType.ARRAY, {"elem_size": 0, "length": 4}),
        (DsType.ARRAY, {"elem_size": 8, "length": 0}),
        (DsType.ARRAY, {"elem_size": True, "length": 4}),
        (DsType.ARRAY, {"elem_size": "8", "length": 4}),
        (DsType.HASHTABLE, {"evict": 1}),
        (DsType.HASHTABLE, {"evcit": True}),
        (DsType.BOX, {"evict": True}),
    ],
)
def test_construct_bad_params(client, ds_type, params):
    frame = client.call(Op.CONSTRUCT, 0, encode_construct(ds_type, params))
    assert frame.status == Status.BAD_REQUEST, frame
    assert client.call(Op.PING, 0, b"alive").body == b"alive"


# -- read / write / remove -------------------------------------------------


def test_box(client):
    box = client.construct(DsType.BOX)
    assert read(client, box, idx(7)).status == Status.NOT_FOUND
    assert write(client, box, idx(7), b"seven", flags=3, exptime=1, cas=9).status == Status.OK
    assert decode_item(read(client, box, idx(7)).body) == (0, 0, 0, b"seven")
    assert write(client, box, idx(2**64 - 1), b"").status == Status.OK
    assert value_of(client, box, idx(2**64 - 1)) == b""
    big = os.urandom(8 * 1024 * 1024 + 3)
    assert write(client, box, idx(8), big).status == Status.OK
    assert value_of(client, box, idx(8)) == big
    assert client.call(Op.REMOVE, box, encode_name(idx(7))).status == Status.OK
    assert client.call(Op.REMOVE, box, encode_name(idx(7))).status == Status.NOT_FOUND
    assert read(client, box, idx(7)).status == Status.NOT_FOUND
    assert read(client, box, b"short").status == Status.BAD_REQUEST


def test_array(client):
    arr = client.construct(DsType.ARRAY, elem_size=16, length=4)
    assert read(client, arr, idx(0)).status == Status.NOT_FOUND
    assert write(client, arr, idx(3), b"x" * 16).status == Status.OK
    assert value_of(client, arr, idx(3)) == b"x" * 16
    assert write(client, arr, idx(4), b"x" * 16).status == Status.BAD_REQUEST  # index
    assert write(client, arr, idx(0), b"x" * 15).status == Status.BAD_REQUEST  # size
    assert write(client, arr, idx(0), b"x" * 17).status == Status.BAD_REQUEST
    assert read(client, arr, idx(4)).status == Status.BAD_REQUEST
    assert client.call(Op.REMOVE, arr, encode_name(idx(3))).status == Status.OK
    assert read(client, arr, idx(3)).status == Status.NOT_FOUND


def test_hashtable(client, table):
    key = b"k" * 250
    assert read(client, table, key).status == Status.NOT_FOUND
    exptime = int(time.time()) + 3600
    assert write(client, table, key, b"v1", 0xFFFFFFFF, exptime, 2**64 - 1).status == Status.OK
    assert decode_item(read(client, table, key).body) == (0xFFFFFFFF, exptime, 2**64 - 1, b"v1")
    assert write(client, table, key, b"v2", 1, 0, 2).status == Status.OK
    assert decode_item(read(client, table, key).body) == (1, 0, 2, b"v2")
    assert write(client, table, b"", b"empty key").status == Status.OK
    assert value_of(client, table, b"") == b"empty key"
    assert client.call(Op.REMOVE, table, encode_name(key)).status == Status.OK
    assert client.call(Op.REMOVE, table, encode_name(key)).status == Status.NOT_FOUND
    assert read(client, table, key).status == Status.NOT_FOUND


def test_expiry_lazy_and_swept(client, table):
    time.sleep(1.0 - time.time() % 1.0 + 0.01)  # start of a second: `lazy` lives ~1 s
    now = int(time.time())
    soon = now + 1
    assert write(client, table, b"lazy", b"v", exptime=soon).status == Status.OK
    for i in range(50):
        write(client, table, b"swept%d" % i, b"v", exptime=soon)
    write(client, table, b"forever", b"v")
    write(client, table, b"later", b"v", exptime=now + 3600)
    assert write(client, table, b"past", b"v", exptime=now - 1).status == Status.OK
    assert read(client, table, b"past").status == Status.NOT_FOUND
    assert value_of(client, table, b"lazy") == b"v"
    before = stats(client)
    time.sleep(2.2)  # past `soon`, and at least one 1-second sweep after it
    after = stats(client)
    assert after["expired"] - before["expired"] >= 50
    assert after["objects"] <= before["objects"] - 50
    assert read(client, table, b"lazy").status == Status.NOT_FOUND
    assert value_of(client, table, b"forever") == b"v"
    assert value_of(client, table, b"later") == b"v"


# -- memory limit ----------------------------------------------------------


def test_lru_eviction_under_the_limit():
    with FarNode("-m", "1") as server:
        c = server.client()
        cache = c.construct(DsType.HASHTABLE, evict=True)
        values = {b"key%05d" % i: os.urandom(1000) for i in range(2000)}  # ~2 MB
        keys = list(values)
        for i, key in enumerate(keys):
            assert write(c, cache, key, values[key]).status == Status.OK
            if i % 50 == 0:
                assert value_of(c, cache, keys[0]) == values[keys[0]]  # keep the first hot
        st = stats(c)
        assert st["evictions"] > 0 and st["bytes"] <= st["limit_bytes"] == 1024 * 1024
        assert value_of(c, cache, keys[0]) == values[keys[0]]
        assert all(value_of(c, cache, k) is None for k in keys[1:100])
        assert all(value_of(c, cache, k) == values[k] for k in keys[-300:])
        assert st["objects"] < 2000
        assert server.stop() == 0


def test_gone_reports_evicted_and_expired_keys_once():
    with FarNode("-m", "1") as server:
        c = server.client()
        cache = c.construct(DsType.HASHTABLE, evict=True)
        keys = [b"key%05d" % i for i in range(2000)]  # ~2 MB through 1 MB: evictions
        for key in keys:
            assert write(c, cache, key, b"v" * 1000).status == Status.OK
        assert write(c, cache, b"brief", b"v", exptime=int(time.time()) - 1).status == Status.OK
        assert write(c, cache, b"removed", b"v").status == Status.OK
        assert c.call(Op.REMOVE, cache, encode_name(b"removed")).status == Status.OK
        gone: list[bytes] = []
        while True:
            reply = compute(c, cache, "gone", b"")
            assert reply.status == Status.OK
            (lost,), data = decode_compute_reply("gone", reply.body)
            assert lost == 0
            names = decode_names(data)
            if not names:
                break
            gone += names
        evicted = stats(c)["evictions"]
        present = {k for k in keys if value_of(c, cache, k) is not None}
        assert len(gone) == evicted > 0 and len(set(gone)) == len(gone)
        assert set(gone) == set(keys) - present  # exactly the keys that left
        assert b"removed" not in gone  # a REMOVE is the client's own doing
        assert server.stop() == 0


def test_no_space_for_data_structures():
    with FarNode("-m", "1") as server:
        c = server.client()
        arr = c.construct(DsType.ARRAY, elem_size=8192, length=1024)  # 8 MiB
        statuses = []
        for i in range(200):
            statuses.append(write(c, arr, idx(i), bytes([i % 256]) * 8192).status)
        assert Status.NO_SPACE in statuses
        first_fail = statuses.index(Status.NO_SPACE)
        assert 100 < first_fail < 128 and set(statuses[first_fail:]) == {Status.NO_SPACE}
        assert all(value_of(c, arr, idx(i)) == bytes([i]) * 8192 for i in range(first_fail))
        plain = c.construct(DsType.HASHTABLE)
        assert write(c, plain, b"k", b"v" * 10000).status == Status.NO_SPACE
        assert stats(c)["evictions"] == 0
        # Data gives way to nothing; a cache gives way to data.
        c.call(Op.REMOVE, arr, encode_name(idx(0)))
        c.call(Op.REMOVE, arr, encode_name(idx(1)))
        cache = c.construct(DsType.HASHTABLE, evict=True)
        assert write(c, cache, b"c", b"v" * 16000).status == Status.OK
        assert write(c, arr, idx(0), b"a" * 8192).status == Status.OK
        assert write(c, arr, idx(1), b"b" * 8192).status == Status.OK
        assert value_of(c, cache, b"c") is None and stats(c)["evictions"] == 1
        assert server.stop() == 0


# -- compute ---------------------------------------------------------------


def test_append_prepend(client, table):
    assert compute(client, table, "append", b"k", 5, data=b"x").status == Status.NOT_FOUND
    write(client, table, b"k", b"mid", flags=4, exptime=0, cas=1)
    frame = compute(client, table, "append", b"k", 5, data=b">>")
    assert frame.status == Status.OK and decode_compute_reply("append", frame.body) == ((5,), b"")
    frame = compute(client, table, "prepend", b"k", 6, data=b"<<")
    assert decode_compute_reply("prepend", frame.body) == ((6,), b"")
    assert decode_item(read(client, table, b"k").body) == (4, 0, 6, b"<<mid>>")


@pytest.mark.parametrize(
    ("value", "op", "delta", "expected"),
    [
        (b"10", "incr", 5, 15),
        (b"18446744073709551615", "incr", 2, 1),  # wraps at 2^64
        (b"5", "decr", 7, 0),  # floors at 0
        (b"100", "decr", 1, 99),
        (b"  42", "incr", 0, 42),  # strtoull skips leading spaces
        (b"42 junk", "incr", 1, 43),  # stops at a space
        (b"7\x00junk", "incr", 1, 8),  # and at a NUL
        (b"-0", "incr", 1, 1),
    ],
)
def test_incr_decr(client, table, value, op, delta, expected):
    write(client, table, b"n", value, flags=9)
    frame = compute(client, table, op, b"n", delta, 77)
    assert frame.status == Status.OK, frame
    assert decode_compute_reply(op, frame.body) == ((expected, 77), b"")
    # a shorter number is padded with spaces to the old length (memcached's in-place rewrite)
    stored = (b"%d" % expected).ljust(len(value))
    assert decode_item(read(client, table, b"n").body) == (9, 0, 77, stored)


@pytest.mark.parametrize(
    "value", [b"", b"abc", b"12abc", b"-1", b"18446744073709551616", b" ", b"0x10"]
)
def test_incr_non_numeric(client, table, value):
    write(client, table, b"n", value)
    assert compute(client, table, "incr", b"n", 1, 2).status == Status.NON_NUMERIC
    assert compute(client, table, "decr", b"n", 1, 2).status == Status.NON_NUMERIC
    assert value_of(client, table, b"n") == value


def test_incr_missing(client, table):
    assert compute(client, table, "incr", b"nope", 1, 2).status == Status.NOT_FOUND


def test_touch_and_gat(client, table):
    assert compute(client, table, "touch", b"k", 0).status == Status.NOT_FOUND
    assert compute(client, table, "gat", b"k", 0).status == Status.NOT_FOUND
    write(client, table, b"k", b"val", flags=2, cas=3)
    later = int(time.time()) + 3600
    assert compute(client, table, "touch", b"k", later).status == Status.OK
    assert decode_item(read(client, table, b"k").body) == (2, later, 3, b"val")
    frame = compute(client, table, "gat", b"k", 0)
    assert decode_compute_reply("gat", frame.body) == ((2, 0, 3), b"val")
    assert decode_item(read(client, table, b"k").body) == (2, 0, 3, b"val")
    assert compute(client, table, "touch", b"k", int(time.time()) - 1).status == Status.OK
    assert read(client, table, b"k").status == Status.NOT_FOUND


def test_cas(client, table):
    assert compute(client, table, "cas", b"k", 1, 0, 0, 2, data=b"v").status == Status.NOT_FOUND
    write(client, table, b"k", b"old", cas=10)
    assert compute(client, table, "cas", b"k", 11, 0, 0, 12, data=b"new").status == Status.EXISTS
    assert value_of(client, table, b"k") == b"old"
    assert compute(client, table, "cas", b"k", 10, 5, 0, 12, data=b"new").status == Status.OK
    assert decode_item(read(client, table, b"k").body) == (5, 0, 12, b"new")


def test_clear(client, table):
    for i in range(10):
        write(client, table, b"k%d" % i, b"v")
    assert compute(client, table, "clear", b"").status == Status.OK
    assert all(read(client, table, b"k%d" % i).status == Status.NOT_FOUND for i in range(10))


def test_unknown_or_misplaced_compute_op(client, table):
    frame = client.call(Op.COMPUTE, table, encode_compute("frobnicate", b"k"))
    assert frame.status == Status.BAD_REQUEST and "frobnicate" in decode_message(frame.body)
    assert compute(client, table, "sum", b"", 0, 1).status == Status.BAD_REQUEST
    arr = client.construct(DsType.ARRAY, elem_size=8, length=4)
    assert compute(client, arr, "incr", idx(0), 1, 2).status == Status.BAD_REQUEST


def test_array_sum_checksum(client):
    arr = client.construct(DsType.ARRAY, elem_size=16, length=8)
    lanes = {0: (1, 2), 2: (2**64 - 1, 5), 5: (7, 0)}
    for i, (a, b) in lanes.items():
        write(client, arr, idx(i), struct.pack("<QQ", a, b))
    frame = compute(client, arr, "sum", b"", 0, 8)
    assert decode_compute_reply("sum", frame.body) == (((1 + 2 + 2**64 - 1 + 5 + 7) % 2**64,), b"")
    frame = compute(client, arr, "sum", b"", 1, 2)
    assert decode_compute_reply("sum", frame.body) == ((4,), b"")  # 2^64 - 1 + 5 wraps
    crc = 0
    for i in range(1, 7):
        a, b = lanes.get(i, (0, 0))
        crc = zlib.crc32(struct.pack("<QQ", a, b), crc)
    frame = compute(client, arr, "checksum", b"", 1, 6)
    assert decode_compute_reply("checksum", frame.body) == ((crc,), b"")
    assert compute(client, arr, "sum", b"", 4, 5).status == Status.BAD_REQUEST  # past the end
    odd = client.construct(DsType.ARRAY, elem_size=12, length=2)
    assert compute(client, odd, "sum", b"", 0, 2).status == Status.BAD_REQUEST
    assert compute(client, odd, "checksum", b"", 0, 2).status == Status.OK


def test_array_copy_is_memmove(client):
    arr = client.construct(DsType.ARRAY, elem_size=8, length=10)
    for i in range(5):
        write(client, arr, idx(i), struct.pack("<Q", i + 1))
    assert compute(client, arr, "copy", b"", 0, 2, 5).status == Status.OK  # forward overlap
    got = [value_of(client, arr, idx(i)) for i in range(10)]
    expect = [struct.pack("<Q", v) if v else None for v in (1, 2, 1, 2, 3, 4, 5, 0, 0, 0)]
    assert got == expect
    assert compute(client, arr, "copy", b"", 2, 0, 5).status == Status.OK  # backward overlap
    got = [value_of(client, arr, idx(i)) for i in range(10)]
    expect = [struct.pack("<Q", v) if v else None for v in (1, 2, 3, 4, 5, 4, 5, 0, 0, 0)]
    assert got == expect
    assert compute(client, arr, "copy", b"", 7, 0, 2).status == Status.OK  # copies absence
    assert value_of(client, arr, idx(0)) is None and value_of(client, arr, idx(1)) is None
    assert compute(client, arr, "copy", b"", 0, 9, 2).status == Status.BAD_REQUEST


# -- stats, ping, pipelining ------------------------------------------------


def test_stats_and_ping(client, table):
    st = stats(client)
    assert STATS_KEYS <= set(st)
    write(client, table, b"s", b"v")
    read(client, table, b"s")
    client.call(Op.REMOVE, table, encode_name(b"s"))
    compute(client, table, "clear", b"")
    st2 = stats(client)
    for key in ("reads", "writes", "removes", "computes"):
        assert st2[key] == st[key] + 1, key
    assert st2["connections"] >= 1 and st2["limit_bytes"] == 1024 * 1024 * 1024
    assert client.call(Op.PING, 0, b"\x00echo").body == b"\x00echo"


def test_pipelined_requests_matched_by_req_id(client, table):
    requests = []
    for i in range(300):
        requests.append((Op.WRITE, table, encode_write(b"p%d" % i, b"v%d" % i)))
        requests.append((Op.READ, table, encode_name(b"p%d" % i)))
        requests.append((Op.READ, table, encode_name(b"missing%d" % i)))
    replies = client.pipeline(requests)
    for i in range(300):
        w, r, m = replies[3 * i : 3 * i + 3]
        assert (w.status, r.status, m.status) == (Status.OK, Status.OK, Status.NOT_FOUND)
        assert decode_item(r.body)[3] == b"v%d" % i


# -- failure isolation -----------------------------------------------------


def _garbage(rng: random.Random) -> bytes:
    """A frame that is certainly malformed, in one of several ways."""
    kind = rng.randrange(6)
    body = rng.randbytes(rng.randrange(40))
    if kind == 0:
        return struct.pack("<I", rng.randrange(2**26 + 2048, 2**32)) + body  # too long
    if kind == 1:
        return struct.pack("<I", rng.randrange(12)) + body  # shorter than the header
    if kind == 2:
        return struct.pack("<IIBBHI", 12, 1, rng.choice([0, *range(11, 256)]), 0, 0, 0)
    if kind == 3:
        return struct.pack("<IIBBHI", 12, 1, Op.PING, rng.randrange(1, 256), 0, 0)
    if kind == 4:  # a READ whose name length runs past its body
        return encode_frame(1, Op.READ, 1, struct.pack("<H", len(body) + 1) + body)
    return encode_frame(1, Op.CONSTRUCT, 0, bytes([rng.choice([0, 4, 200])]) + body)


def test_garbage_closes_only_its_connection(node, table, client):
    rng = random.Random(1234)
    write(client, table, b"survivor", b"intact")
    for i in range(40):
        bad = node.client(hello=i % 2 == 0)
        bad.sock.sendall(encode_frame(7, Op.PING, 0, b"before") + _garbage(rng))
        if i % 2 == 0:
            assert bad.recv().body == b"before"  # replies before the bad frame still go out
        assert bad.closed(), f"connection {i} was not closed"
        bad.close()
        assert value_of(client, table, b"survivor") == b"intact"
    for _ in range(20):  # pure noise, with or without HELLO first
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(rng.randbytes(rng.randrange(1, 200)))
        s.close()
    assert value_of(client, table, b"survivor") == b"intact"
    assert any(b"closing connection" in line for line in node.lines)
