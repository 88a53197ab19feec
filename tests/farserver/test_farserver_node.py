"""farserver.node: ds ids, CONSTRUCT params, DESTRUCT, stats (node.py's docstring)."""

from __future__ import annotations

import pytest

from farserver.errors import BadRequest, NoStructure
from farserver.node import Node
from farserver.store import Array, HashTable
from protocol.far import DsType, Status


def test_ids_are_node_wide_wrap_and_skip_zero():
    node = Node(1 << 20, first_ds=2**32 - 2)
    ids = [node.construct(DsType.BOX, {}) for _ in range(3)]
    assert ids == [2**32 - 2, 2**32 - 1, 1]
    node.destruct(ids[0])
    assert node.construct(DsType.BOX, {}) == 2


def test_ids_start_at_random():
    starts = {Node(1 << 20).construct(DsType.BOX, {}) for _ in range(5)}
    assert len(starts) > 1 and 0 not in starts


def test_params_are_typed_and_defaulted():
    node = Node(1 << 20)
    table = node.structure(node.construct(DsType.HASHTABLE, {}))
    assert isinstance(table, HashTable) and not table.evict
    arr = node.structure(node.construct(DsType.ARRAY, {"elem_size": 8, "length": 2**64 - 1}))
    assert isinstance(arr, Array) and arr.length == 2**64 - 1
    with pytest.raises(BadRequest, match="needs param 'length'"):
        node.construct(DsType.ARRAY, {"elem_size": 8})
    with pytest.raises(BadRequest, match="unknown hashtable params: x"):
        node.construct(DsType.HASHTABLE, {"x": 1})


def test_unknown_ds_is_not_found():
    node = Node(1 << 20)
    with pytest.raises(NoStructure) as exc:
        node.structure(12345)
    assert exc.value.status == Status.NOT_FOUND


def test_destruct_gives_the_bytes_back():
    node = Node(1 << 20)
    ds = node.construct(DsType.HASHTABLE, {"evict": True})
    node.structure(ds).write(b"k", 0, 0, 0, b"v" * 100, 0)
    assert node.stats()["bytes"] > 100 and node.stats()["objects"] == 1
    node.destruct(ds)
    stats = node.stats()
    assert (stats["bytes"], stats["objects"], stats["structures"]) == (0, 0, 0)
