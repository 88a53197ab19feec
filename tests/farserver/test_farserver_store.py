"""farserver.store and farserver.memory: structures, accounting, LRU eviction, expiry.

Spec under test (their module docstrings): an object costs name + value +
a fixed overhead; the budget's `used` is the sum of every structure's bytes;
a write that does not fit raises NoSpace and changes nothing (an evicting
table's failed WRITE also forgets the old item); eviction takes LRU items
of {"evict": true} tables, the written table first, never the key being
written; expired items read as missing and are swept from a bounded heap.

SCAN (seqlog.py): a structure walked from cursor 0 to next_cursor 0 returns
every object that lives through the walk at least once, its last entry being
its final state, whatever happens between pages; never an expired item; no
LRU move; every cursor is valid; the log stays within 2 x objects + SLACK.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farserver import compute
from farserver.errors import BadRequest, NoSpace
from farserver.memory import INDEX_OVERHEAD, ITEM_OVERHEAD, Budget
from farserver.seqlog import SLACK, VISIT_LIMIT
from farserver.store import Array, Box, HashTable, Item
from protocol.far import SCAN_ENTRY_SIZE, encode_index

NOW = 1_700_000_000


def put(table: HashTable, key: bytes, value: bytes, exptime: int = 0) -> None:
    """An unconditional write at NOW."""
    table.write(key, 0, exptime, 0, value, NOW)


def test_costs_are_name_value_and_overhead():
    budget = Budget(1 << 20)
    table = HashTable(1, budget, evict=False)
    put(table, b"abc", b"x" * 10)
    assert budget.used == table.bytes == 3 + 10 + ITEM_OVERHEAD
    put(table, b"abc", b"x" * 4)  # overwrite: only the value's size changes
    assert budget.used == 3 + 4 + ITEM_OVERHEAD
    box = Box(2, budget)
    box.write(encode_index(5), 0, 0, 0, b"y" * 100, NOW)
    assert box.bytes == 8 + 100 + INDEX_OVERHEAD
    assert budget.used == table.bytes + box.bytes
    table.free()
    box.free()
    assert budget.used == 0


def test_eviction_is_lru_and_bumped_by_reads():
    cost = 2 + 100 + ITEM_OVERHEAD
    budget = Budget(10 * cost)
    table = HashTable(1, budget, evict=True)
    for i in range(10):
        put(table, b"k%d" % i, b"v" * 100)
    assert table.read(b"k0", NOW) is not None  # k0 is now the most recent
    put(table, b"kA", b"v" * 100)
    assert budget.evictions == 1 and table.read(b"k1", NOW) is None
    assert table.read(b"k0", NOW) is not None
    assert budget.used <= budget.limit


def test_written_key_is_never_its_own_victim():
    budget = Budget(2 * (1 + 10 + ITEM_OVERHEAD) + 50)
    table = HashTable(1, budget, evict=True)
    put(table, b"a", b"v" * 10)
    put(table, b"b", b"v" * 10)
    table.get(b"b", NOW)  # a is least recent
    big = Item(0, 0, 0, b"v" * 100)
    table.put(b"a", big, NOW, forget=False)  # grows a: evicts b, not a
    assert table.read(b"b", NOW) is None and table.read(b"a", NOW)[1] == b"v" * 100
    with pytest.raises(NoSpace):  # a alone over the limit: a stays as it was
        table.put(b"a", Item(0, 0, 0, b"v" * 1000), NOW, forget=False)
    assert table.read(b"a", NOW)[1] == b"v" * 100


def test_failed_write_keeps_data_but_forgets_cache():
    budget = Budget(1000)
    plain = HashTable(1, budget, evict=False)
    put(plain, b"k", b"old")
    with pytest.raises(NoSpace):
        put(plain, b"k", b"v" * 2000)
    assert plain.read(b"k", NOW)[1] == b"old"
    plain.free()
    cache = HashTable(2, budget, evict=True)
    put(cache, b"k", b"old")
    with pytest.raises(NoSpace):
        put(cache, b"k", b"v" * 2000)  # bigger than the whole limit
    assert cache.read(b"k", NOW) is None and budget.used == 0


def test_data_evicts_caches_in_construction_order():
    cost = 1 + 100 + ITEM_OVERHEAD
    budget = Budget(4 * cost)
    first = HashTable(1, budget, evict=True)
    second = HashTable(2, budget, evict=True)
    put(first, b"a", b"v" * 100)
    put(second, b"b", b"v" * 100)
    put(first, b"c", b"v" * 100)
    arr = Array(3, budget, elem_size=cost * 3 - 8 - INDEX_OVERHEAD, length=1)
    arr.write(encode_index(0), 0, 0, 0, b"z" * arr.elem_size, NOW)
    assert len(first) == 0 and len(second) == 1 and budget.evictions == 2
    with pytest.raises(NoSpace):  # evicting every cache item would not do: none is evicted
        Box(4, budget).write(encode_index(1), 0, 0, 0, b"q" * (2 * cost), NOW)
    assert len(second) == 1 and budget.evictions == 2


def test_array_rules():
    arr = Array(1, Budget(1 << 20), elem_size=4, length=3)
    with pytest.raises(BadRequest):
        arr.write(encode_index(3), 0, 0, 0, b"abcd", NOW)
    with pytest.raises(BadRequest):
        arr.write(encode_index(0), 0, 0, 0, b"abc", NOW)
    with pytest.raises(BadRequest):
        arr.read(b"\0" * 7, NOW)
    arr.write(encode_index(2), 0, 0, 0, b"abcd", NOW)
    assert list(arr.elements(range(0, 3))) == [(2, b"abcd")]
    with pytest.raises(BadRequest):
        arr.check_range(1, 3)


def test_expiry_lazy_sweep_and_bounded_heap():
    budget = Budget(1 << 30)
    table = HashTable(1, budget, evict=False)
    put(table, b"gone", b"v", exptime=NOW + 1)
    put(table, b"kept", b"v", exptime=NOW + 100)
    assert table.read(b"gone", NOW + 1) is None and budget.expired == 1
    for i in range(10):
        put(table, b"s%d" % i, b"v", exptime=NOW + 5)
    assert table.sweep(NOW + 5, limit=4) == 4
    assert table.sweep(NOW + 5, limit=100) == 6
    assert len(table) == 1 and budget.expired == 11
    for _ in range(5000):  # re-setting one key must not grow the heap without bound
        put(table, b"kept", b"v", exptime=NOW + 100)
    assert len(table._heap) <= 2 * len(table) + 1024 + 1
    put(table, b"born-dead", b"v", exptime=NOW)
    assert table.read(b"born-dead", NOW) is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "remove", "read", "append", "clear"]),
            st.integers(0, 7),
            st.integers(0, 300),
            st.sampled_from([0, NOW - 1, NOW + 1, NOW + 10]),
        ),
        max_size=60,
    )
)
def test_accounting_invariant(ops):
    budget = Budget(3000)
    cache = HashTable(1, budget, evict=True)
    data = HashTable(2, budget, evict=False)
    for action, k, size, exptime in ops:
        table = cache if k % 2 else data
        key = b"key%d" % k
        try:
            if action == "write":
                put(table, key, b"v" * size, exptime)
            elif action == "remove":
                table.remove(key, NOW)
            elif action == "read":
                table.read(key, NOW)
            elif action == "append":
                item = table.get(key, NOW)
                if item is not None:
                    table.put(key, Item(0, item.exptime, 0, item.value + b"a" * size), NOW, False)
            else:
                table.clear()
        except NoSpace:
            pass
        expect = sum(
            len(k) + len(i.value) + ITEM_OVERHEAD for t in (cache, data) for k, i in t.items.items()
        )
        assert budget.used == cache.bytes + data.bytes == expect
        assert budget.used <= budget.limit


# -- scan ----------------------------------------------------------------------------------


def scan_all(structure, max_items: int = 3, max_bytes: int = 1 << 20, now: int = NOW, between=None):
    """Every entry of a full scan, calling between(page) after each non-final page."""
    out = []
    cursor = 0
    page = 0
    while True:
        cursor, entries = structure.scan(cursor, max_items, max_bytes, now)
        out.extend(entries)
        if cursor == 0:
            return out
        if between is not None:
            between(page)
        page += 1


def test_scan_walks_write_order_and_moves_nothing():
    table = HashTable(1, Budget(1 << 20), evict=True)
    for i in range(10):
        table.write(b"k%d" % i, i, NOW + 100 + i, 1000 + i, b"v%d" % i, NOW)
    table.read(b"k3", NOW)  # LRU order now differs from write order
    lru = list(table.items)
    entries = scan_all(table)
    assert entries == [(b"k%d" % i, i, NOW + 100 + i, 1000 + i, b"v%d" % i) for i in range(10)]
    assert list(table.items) == lru


def test_scan_sees_rewrites_again_and_skips_the_dead():
    table = HashTable(1, Budget(1 << 20), evict=False)
    for key in (b"a", b"b", b"c", b"d"):
        put(table, key, b"1")

    def between(page: int) -> None:
        if page == 0:  # after a, b: rewrite a, touch b, remove c
            put(table, b"a", b"2")
            compute.REGISTRY[table.kind]["touch"](table, b"b", (NOW + 50,), b"", NOW)
            table.remove(b"c", NOW)

    entries = scan_all(table, max_items=2, between=between)
    assert [(e[0], e[2], e[4]) for e in entries] == [
        (b"a", 0, b"1"),
        (b"b", 0, b"1"),
        (b"d", 0, b"1"),
        (b"a", 0, b"2"),  # written again: met again, in its final state
        (b"b", NOW + 50, b"1"),  # touched: a write too
    ]


def test_scan_never_returns_expired_items():
    table = HashTable(1, Budget(1 << 20), evict=False)
    put(table, b"soon", b"v", exptime=NOW + 1)
    put(table, b"later", b"v", exptime=NOW + 100)
    put(table, b"never", b"v")
    assert [e[0] for e in scan_all(table, now=NOW)] == [b"soon", b"later", b"never"]
    assert [e[0] for e in scan_all(table, now=NOW + 1)] == [b"later", b"never"]
    assert len(table) == 3  # scan reclaims nothing (a read or the sweep does)


def test_every_cursor_is_valid():
    table = HashTable(1, Budget(1 << 20), evict=False)
    for i in range(6):
        put(table, b"k%d" % i, b"v")
    cursor, entries = table.scan(0, 2, 1 << 20, NOW)
    assert [e[0] for e in entries] == [b"k0", b"k1"] and cursor != 0
    table.remove(b"k2", NOW)  # the cursor's own object goes: resume after it
    again, rest = table.scan(cursor, 100, 1 << 20, NOW)
    assert again == 0 and [e[0] for e in rest] == [b"k3", b"k4", b"k5"]
    assert table.scan(cursor, 100, 1 << 20, NOW) == (0, rest)  # a retried page is the same
    assert table.scan(2**64 - 1, 100, 1 << 20, NOW) == (0, [])
    table.clear()
    assert table.scan(cursor, 100, 1 << 20, NOW) == (0, [])
    put(table, b"new", b"v")  # seqs go on counting after a clear: old cursors stay behind
    assert [e[0] for e in table.scan(cursor, 100, 1 << 20, NOW)[1]] == [b"new"]


def test_scan_page_limits():
    table = HashTable(1, Budget(1 << 30), evict=False)
    for i in range(5):
        put(table, b"k%d" % i, b"x" * 100)
    size = SCAN_ENTRY_SIZE + 2 + 100
    cursor, entries = table.scan(0, 100, 2 * size, NOW)  # exactly two fit
    assert len(entries) == 2 and cursor != 0
    cursor, entries = table.scan(0, 100, 2 * size - 1, NOW)
    assert len(entries) == 1
    cursor, entries = table.scan(0, 100, 0, NOW)  # the first entry always comes
    assert len(entries) == 1 and entries[0][0] == b"k0"
    cursor, entries = table.scan(0, 4, 1 << 30, NOW)
    assert len(entries) == 4 and cursor != 0
    assert table.scan(cursor, 4, 1 << 30, NOW)[0] == 0


def test_scan_looks_at_a_bounded_number_of_entries():
    table = HashTable(1, Budget(1 << 30), evict=False)
    for i in range(VISIT_LIMIT + 10):
        put(table, b"%d" % i, b"v", exptime=NOW + 1)
    put(table, b"live", b"v")
    cursor, entries = table.scan(0, 10, 1 << 20, NOW + 1)  # all expired: none returned
    assert entries == [] and cursor != 0  # but the page ends, and the cursor moved on
    assert table.scan(cursor, 10, 1 << 20, NOW + 1) == (0, [(b"live", 0, 0, 0, b"v")])


def test_scan_log_stays_bounded():
    table = HashTable(1, Budget(1 << 30), evict=False)
    for _ in range(5000):
        put(table, b"same", b"v")
    assert len(table.log) <= 2 * 1 + SLACK + 1
    for i in range(5000):
        put(table, b"k%d" % i, b"v")
    for i in range(5000):
        table.remove(b"k%d" % i, NOW)
    assert len(table.log) <= 2 * len(table) + SLACK
    assert [e[0] for e in scan_all(table, max_items=100)] == [b"same"]
    box = Box(2, Budget(1 << 30))
    for i in range(5000):
        box.write(encode_index(i % 3), 0, 0, 0, b"v", NOW)
    assert len(box.log) <= 2 * 3 + SLACK + 1


def test_box_and_array_scans_name_by_index():
    box = Box(1, Budget(1 << 20))
    for i in (5, 2**64 - 1, 0):
        box.write(encode_index(i), 7, 8, 9, b"box%d" % i, NOW)  # flags/exptime/cas not kept
    assert scan_all(box) == [(encode_index(i), 0, 0, 0, b"box%d" % i) for i in (5, 2**64 - 1, 0)]
    arr = Array(2, Budget(1 << 20), elem_size=8, length=10)
    arr.store_many([(i, struct.pack("<Q", i)) for i in (3, 1, 4)])
    compute.REGISTRY[arr.kind]["copy"](arr, b"", (3, 8, 2), b"", NOW)  # 3, 4 -> 8, 9
    arr.remove(encode_index(1), NOW)
    assert [(struct.unpack("<Q", e[0])[0], e[4]) for e in scan_all(arr)] == [
        (3, struct.pack("<Q", 3)),
        (4, struct.pack("<Q", 4)),
        (8, struct.pack("<Q", 3)),
        (9, struct.pack("<Q", 4)),
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 15), max_size=16),
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["write", "remove", "read", "touch", "append", "tick"]),
                st.integers(0, 23),
                st.integers(0, 200),
            ),
            max_size=6,
        ),
        max_size=12,
    ),
    st.integers(1, 4),
    st.integers(0, 700),
)
def test_scan_guarantees_under_changes_between_pages(initial, rounds, max_items, max_bytes):
    now = NOW
    table = HashTable(1, Budget(6000), evict=True)  # small: writes evict
    for k in initial:
        put(table, b"key%d" % k, b"i%d" % k)
    at_start = {k: (it.value, it.exptime) for k, it in table.items.items()}
    changed: set[bytes] = set()  # keys written or removed during the scan
    seen: dict[bytes, tuple] = {}  # key -> (value, exptime) last returned
    cursor = 0
    for step in range(len(rounds) + 1000):
        cursor, entries = table.scan(cursor, max_items, max_bytes, now)
        assert len(entries) <= max_items
        sizes = [SCAN_ENTRY_SIZE + len(e[0]) + len(e[4]) for e in entries]
        assert len(entries) <= 1 or sum(sizes) <= max_bytes
        for name, _flags, exptime, _cas, value in entries:
            item = table.items[name]  # returned: it exists, in this state, unexpired
            assert (item.value, item.exptime) == (value, exptime)
            assert not exptime or exptime > now
            seen[name] = (value, exptime)
        if cursor == 0:
            break
        for action, k, size in rounds[step] if step < len(rounds) else []:
            key = b"key%d" % k
            if action == "write":
                put(table, key, b"w" * size, exptime=0 if size % 3 else now + 2)
            elif action == "remove":
                table.remove(key, now)
            elif action == "read":
                table.read(key, now)  # moves it in the LRU, not in the scan
            elif action == "touch":
                compute.REGISTRY[table.kind]["touch"](table, key, (now + 5,), b"", now)
            elif action == "append":
                compute.REGISTRY[table.kind]["append"](table, key, (1,), b"+", now)
            else:
                now += 1  # time passes: items expire
            if action in ("write", "remove", "touch", "append"):
                changed.add(key)
    assert cursor == 0
    for key in at_start.keys() - changed:  # lived through the scan untouched: as it was
        if key in table.items:
            assert seen[key] == at_start[key]
    for key, item in table.items.items():  # everything there at the end: in its final state
        if not item.exptime or item.exptime > now:
            assert seen[key] == (item.value, item.exptime)
