"""farserver.store and farserver.memory: structures, accounting, LRU eviction, expiry.

Spec under test (their module docstrings): an object costs name + value +
a fixed overhead; the budget's `used` is the sum of every structure's bytes;
a write that does not fit raises NoSpace and changes nothing (an evicting
table's failed WRITE also forgets the old item); eviction takes LRU items
of {"evict": true} tables, the written table first, never the key being
written; expired items read as missing and are swept from a bounded heap.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farserver.errors import BadRequest, NoSpace
from farserver.memory import INDEX_OVERHEAD, ITEM_OVERHEAD, Budget
from farserver.store import Array, Box, HashTable, Item
from protocol.far import encode_index

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
