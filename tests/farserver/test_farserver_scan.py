"""SCAN on a real farserver process (protocol/far/bodies.py and farserver/seqlog.py).

Spec under test:
- SCAN (op 10) on a hash table, box or array: `<Q cursor> <I max_items> <I
  max_bytes>` -> `<Q next_cursor> <I count>` and count entries `<H nlen> name
  <I flags> <I exptime> <Q cas> <I vlen> value`; next_cursor 0 ends a scan;
  boxes and arrays name objects by their 8-byte index, flags/exptime/cas 0;
- a full scan returns every object there at its end in that state, so every
  object there throughout at least once, byte-exact, while other
  connections write, remove, evict and let items expire between its calls;
  an expired item never appears;
- a reply holds at most max_items entries and at most max_bytes of entries
  unless its single entry is bigger (a big value still makes progress);
- SCAN moves nothing in the LRU; unknown ds is NOT_FOUND, max_items 0 is
  BAD_REQUEST, a malformed body closes the connection, any cursor is valid;
- STATS carries `limit_bytes` (the -m limit in bytes) and counts `scans`.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from farserver_proc import FarClient, FarNode

from protocol.far import (
    SCAN_ENTRY_SIZE,
    DsType,
    Op,
    Status,
    decode_item,
    decode_scan_reply,
    decode_stats_reply,
    encode_index,
    encode_name,
    encode_scan,
    encode_write,
)


@pytest.fixture(scope="module")
def node():
    """One farserver with the default limit."""
    server = FarNode()
    yield server
    assert server.stop() == 0


@pytest.fixture
def client(node):
    """A connection to `node`, HELLO done."""
    c = node.client()
    yield c
    c.close()


def write(c: FarClient, ds: int, name: bytes, value: bytes, flags=0, exptime=0, cas=0) -> None:
    """WRITE one object, which must succeed."""
    frame = c.call(Op.WRITE, ds, encode_write(name, value, flags, exptime, cas))
    assert frame.status == Status.OK, frame


def scan_page(c: FarClient, ds: int, cursor: int, max_items: int, max_bytes: int):
    """One SCAN call: (next_cursor, entries), the reply's limits checked."""
    frame = c.call(Op.SCAN, ds, encode_scan(cursor, max_items, max_bytes))
    assert frame.status == Status.OK, frame
    next_cursor, entries = decode_scan_reply(frame.body)
    assert len(entries) <= max_items
    assert len(entries) <= 1 or len(frame.body) - 12 <= max_bytes
    assert len(frame.body) == 12 + sum(SCAN_ENTRY_SIZE + len(e[0]) + len(e[4]) for e in entries)
    return next_cursor, entries


def scan_all(c: FarClient, ds: int, max_items=1000, max_bytes=1 << 20, between=None) -> list:
    """Every entry of a full scan; between(page) runs after each page but the last."""
    out: list = []
    cursor = 0
    for page in range(100_000):
        cursor, entries = scan_page(c, ds, cursor, max_items, max_bytes)
        out.extend(entries)
        if cursor == 0:
            return out
        if between is not None:
            between(page)
    raise AssertionError("the scan did not end")


def read_item(c: FarClient, ds: int, name: bytes):
    """(flags, exptime, cas, value), or None on NOT_FOUND."""
    frame = c.call(Op.READ, ds, encode_name(name))
    if frame.status == Status.NOT_FOUND:
        return None
    assert frame.status == Status.OK, frame
    return decode_item(frame.body)


def test_full_scan_under_writes_removes_evictions_and_expiry():
    rng = random.Random(12)
    with FarNode("-m", "1") as server:
        c = server.client()
        other = server.client()  # the writers' connection
        cache = c.construct(DsType.HASHTABLE, evict=True)
        now = int(time.time())
        state: dict[bytes, tuple] = {}  # what we wrote: key -> (flags, exptime, cas, value)

        def put(key: bytes, value: bytes, exptime: int = 0) -> None:
            flags, cas = rng.randrange(2**32), rng.randrange(2**64)
            write(other, cache, key, value, flags, exptime, cas)
            state[key] = (flags, exptime, cas, value)

        overhead = decode_stats_reply(c.call(Op.STATS).body)["item_overhead_bytes"]
        n_old = (1024 * 1024 - 150_000) // (7 + 1000 + overhead)  # 150 KB short of 1 MiB
        for i in range(n_old):
            put(b"old%04d" % i, os.urandom(rng.randrange(500, 1501)))
        expiring = [b"exp%03d" % i for i in range(50)]
        for key in expiring:  # last in write order: the scan meets them after they expire
            put(key, os.urandom(100), exptime=now + 2)
        removed: set[bytes] = set()
        rewritten: set[bytes] = set()
        new_keys: list[bytes] = []
        before = decode_stats_reply(c.call(Op.STATS).body)
        assert before["evictions"] == 0

        def between(page: int) -> None:
            if page == 3:  # let the expiring items expire mid-scan
                time.sleep(max(0.0, now + 2.2 - time.time()))
            hot = [(Op.READ, cache, encode_name(b"old%04d" % i)) for i in range(100)]
            other.pipeline(hot)  # the LRU keeps these: they must appear (reads move nothing)
            for _ in range(3):
                key = b"old%04d" % rng.randrange(n_old)
                if rng.random() < 0.5:
                    other.call(Op.REMOVE, cache, encode_name(key))
                    removed.add(key)
                    state.pop(key, None)
                else:
                    put(key, os.urandom(rng.randrange(0, 2000)))
                    rewritten.add(key)
            for _ in range(6):  # new items push the cache past 1 MiB: LRU items go
                key = b"new%05d" % len(new_keys)
                new_keys.append(key)
                put(key, os.urandom(rng.randrange(2000, 4000)))

        entries = scan_all(c, cache, max_items=17, max_bytes=65536, between=between)
        assert time.time() > now + 2  # the pause did happen
        after = decode_stats_reply(c.call(Op.STATS).body)
        assert after["evictions"] > before["evictions"]  # the scan ran across evictions
        assert after["scans"] - before["scans"] >= 4

        last: dict[bytes, tuple] = {}
        for name, flags, exptime, cas, value in entries:
            last[name] = (flags, exptime, cas, value)
        assert not set(expiring) & set(last)  # they expired before the scan met them
        present = {}  # what the node holds now (reads after the scan: LRU moves no longer matter)
        for key in state:
            item = read_item(c, cache, key)
            if item is not None:
                present[key] = item
        assert len(present) > 100
        untouched = [k for k in present if k.startswith(b"old") and k not in removed | rewritten]
        assert len(untouched) > 50  # objects there throughout: each appears, byte-exact
        for key in present:  # everything there at the end: its last entry is its final state
            assert last[key] == present[key] == state[key], key
        assert len(rewritten & set(present)) > 0 and len(new_keys) > 50
        assert server.stop() == 0


def test_reply_limits_and_big_values_make_progress(client):
    box = client.construct(DsType.BOX)
    values = {i: os.urandom(100_000) for i in range(5)}
    for i, value in values.items():
        write(client, box, encode_index(i), value)
    one = SCAN_ENTRY_SIZE + 8 + 100_000
    for max_bytes, per_page in ((1000, 1), (0, 1), (2 * one, 2), (2 * one - 1, 1), (10**7, 5)):
        cursor, pages, got = 0, [], []
        while True:
            cursor, entries = scan_page(client, box, cursor, 10, max_bytes)
            pages.append(len(entries))
            got.extend(entries)
            if cursor == 0:
                break
        assert max(pages) == per_page, (max_bytes, pages)
        assert got == [(encode_index(i), 0, 0, 0, values[i]) for i in range(5)]
    cursor, entries = scan_page(client, box, 0, 3, 10**7)
    assert len(entries) == 3 and cursor != 0
    assert scan_page(client, box, cursor, 3, 10**7)[1] == [
        (encode_index(i), 0, 0, 0, values[i]) for i in (3, 4)
    ]


def test_scan_box_array_and_table_names(client):
    arr = client.construct(DsType.ARRAY, elem_size=16, length=100)
    for i in (99, 0, 42):
        write(client, arr, encode_index(i), bytes([i]) * 16)
    assert scan_all(client, arr, max_items=2) == [
        (encode_index(i), 0, 0, 0, bytes([i]) * 16) for i in (99, 0, 42)
    ]
    table = client.construct(DsType.HASHTABLE)
    write(client, table, b"k" * 250, b"\r\nEND\r\n", 0xFFFFFFFF, 0, 2**64 - 1)
    write(client, table, b"", b"")
    assert scan_all(client, table) == [
        (b"k" * 250, 0xFFFFFFFF, 0, 2**64 - 1, b"\r\nEND\r\n"),
        (b"", 0, 0, 0, b""),
    ]
    empty = client.construct(DsType.HASHTABLE)
    assert scan_page(client, empty, 0, 10, 100) == (0, [])


def test_scan_moves_nothing_in_the_lru():
    with FarNode("-m", "1") as server:
        c = server.client()
        cache = c.construct(DsType.HASHTABLE, evict=True)
        overhead = decode_stats_reply(c.call(Op.STATS).body)["item_overhead_bytes"]
        count = (1024 * 1024 - 40_000) // (7 + 1000 + overhead)  # ~40 KB short of the limit
        keys = [b"key%04d" % i for i in range(count)]
        for key in keys:
            write(c, cache, key, b"v" * 1000)
        assert decode_stats_reply(c.call(Op.STATS).body)["evictions"] == 0
        assert read_item(c, cache, keys[0]) is not None  # key0 most recent, key1 least
        assert len(scan_all(c, cache, max_items=7)) == count  # in write order: key0 first
        write(c, cache, b"push", b"v" * 50_000)  # evicts the LRU's head
        assert read_item(c, cache, keys[0]) is not None  # a scan that bumped would lose it
        assert read_item(c, cache, keys[1]) is None
        assert server.stop() == 0


def test_scan_errors_and_cursors(node, client):
    table = client.construct(DsType.HASHTABLE)
    for i in range(6):
        write(client, table, b"k%d" % i, b"v%d" % i)
    frame = client.call(Op.SCAN, table, encode_scan(0, 0, 100))
    assert frame.status == Status.BAD_REQUEST
    missing = table + 1000
    assert client.call(Op.SCAN, missing, encode_scan(0, 10, 100)).status == Status.NOT_FOUND
    cursor, entries = scan_page(client, table, 0, 2, 1000)
    assert [e[0] for e in entries] == [b"k0", b"k1"] and cursor != 0
    client.call(Op.REMOVE, table, encode_name(b"k2"))  # where the cursor points
    assert [e[0] for e in scan_page(client, table, cursor, 100, 1000)[1]] == [
        b"k3",
        b"k4",
        b"k5",
    ]
    retried = scan_page(client, table, cursor, 100, 1000)  # a page asked for again: the same
    assert retried == scan_page(client, table, cursor, 100, 1000)
    assert scan_page(client, table, 2**64 - 1, 100, 1000) == (0, [])  # past the last write
    assert client.call(Op.DESTRUCT, table).status == Status.OK
    assert client.call(Op.SCAN, table, encode_scan(cursor, 10, 100)).status == Status.NOT_FOUND
    bad = node.client()
    bad.send(Op.SCAN, missing, encode_scan(0, 1, 1)[:-1])  # malformed: closes, whatever the ds
    assert bad.closed()
    assert client.call(Op.PING, 0, b"alive").body == b"alive"


def test_stats_reports_the_memory_limit():
    with FarNode("-m", "3") as server:
        st = decode_stats_reply(server.client().call(Op.STATS).body)
        assert st["limit_bytes"] == 3 * 1024 * 1024 and st["scans"] == 0
        assert server.stop() == 0
