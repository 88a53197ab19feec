"""runtime/slotindex.py: key -> slot in arrays, keys read back from the items.

Spec (issue 4: per-item metadata in compact arrays, not one Python object
per item): get/add/remove_slot behave as a dict of key -> slot under any
mix of operations, including growth, shrinking, and keys whose hashes (and
so home entries) all collide; no entry holds a key, nor its hash (the owner
reads both back from its items).
"""

from __future__ import annotations

import random

from runtime.slotindex import SlotIndex


class Colliding(bytes):
    """A key whose hash is the same as every other Colliding key's."""

    def __hash__(self) -> int:
        return 0x1234_5678_0000_0042


def make(keys_by_slot: dict[int, bytes]) -> SlotIndex:
    return SlotIndex(lambda slot: keys_by_slot[slot], lambda slot: hash(keys_by_slot[slot]))


def check(index: SlotIndex, model: dict[bytes, int], absent: list[bytes]) -> None:
    assert len(index) == len(model)
    for key, slot in model.items():
        assert index.get(key) == slot
        assert key in index
    for key in absent:
        assert index.get(key) is None and key not in index
    assert sorted(index.slots()) == sorted(model.values())
    assert sorted(index) == sorted(model)


def test_random_operations_match_a_dict():
    rnd = random.Random(7)
    items: dict[int, bytes] = {}
    index = make(items)
    model: dict[bytes, int] = {}
    free: list[int] = []
    next_slot = 0
    for step in range(30_000):
        if model and rnd.random() < 0.45:
            key = rnd.choice(list(model)) if step % 50 == 0 else next(iter(model))
            slot = model.pop(key)
            assert index.remove_slot(slot, hash(key))
            assert not index.remove_slot(slot, hash(key))  # already gone
            free.append(slot)
        else:
            key = b"k%d" % rnd.randrange(1_000_000)
            if key in model:
                continue
            slot = free.pop() if free else next_slot
            next_slot += slot == next_slot
            items[slot] = key
            index.add(hash(key), slot)
            model[key] = slot
        if step % 5000 == 0:
            check(index, model, [b"absent%d" % i for i in range(50)])
    check(index, model, [b"absent%d" % i for i in range(200)])
    while model:  # empty it: the table shrinks back
        key, slot = model.popitem()
        assert index.remove_slot(slot, hash(key))
    assert len(index) == 0 and len(index.entries) == 1024


def test_colliding_hashes_are_told_apart_by_their_keys():
    items: dict[int, bytes] = {}
    index = make(items)
    keys = [Colliding(b"c%d" % i) for i in range(200)]
    for slot, key in enumerate(keys):
        items[slot] = key
        index.add(hash(key), slot)
    model = {key: slot for slot, key in enumerate(keys)}
    check(index, model, [Colliding(b"nope")])
    for slot in range(0, 200, 3):  # holes in the middle of one long run
        assert index.remove_slot(slot, hash(keys[slot]))
        del model[keys[slot]]
    check(index, model, [Colliding(b"c0"), Colliding(b"c3")])


def test_no_python_object_per_key():
    items: dict[int, bytes] = {}
    index = make(items)
    for slot in range(10_000):
        items[slot] = b"key%d" % slot
        index.add(hash(items[slot]), slot)
    # u32 entries only: a few bytes per key, whatever the key length
    assert index.nbytes / 10_000 < 11
