"""runtime/heap.py, runtime/pointer.py, runtime/scope.py, runtime/prefetch.py.

Spec: DESIGN §3-§4 — 1 MiB segments up to a byte budget, bump allocation,
segments freed whole, exact accounting; the 64-bit metadata word layout;
DerefScope pins segments; AIFM's stride prefetcher (8 equal strides).
"""

from __future__ import annotations

import pytest

from runtime.heap import HEADER_SIZE, Heap, align
from runtime.pointer import (
    DIRTY,
    EVACUATING,
    FAR,
    PRESENT,
    far_word,
    hotness,
    local_word,
    offset_of,
    segment_of,
    with_hotness,
)
from runtime.prefetch import StrideDetector
from runtime.scope import DerefScope

MiB = 1 << 20


class Owner:
    words = None


def test_segments_hold_one_owner_each():
    h = Heap(8 * MiB)
    a, b = h.register(Owner()), h.register(Owner())
    la = [h.alloc(1000, a, i) for i in range(3)]
    lb = [h.alloc(1000, b, i) for i in range(3)]
    assert {s for s, _ in la}.isdisjoint({s for s, _ in lb})
    assert {h.segments[s].owner for s, _ in la} == {a}
    assert [slot for _, _, slot in h.objects(h.segments[lb[0][0]])] == [0, 1, 2]


def test_pointer_layout_round_trips():
    w = local_word(123456, 1048000, DIRTY | FAR, 7)
    assert w & PRESENT and w & DIRTY and w & FAR and not w & EVACUATING
    assert segment_of(w) == 123456 and offset_of(w) == 1048000 and hotness(w) == 7
    assert hotness(with_hotness(w, 300)) == 255 and hotness(with_hotness(w, -3)) == 0
    f = far_word(2**40 + 5, 3)
    assert not f & PRESENT and f & FAR and hotness(f) == 3 and f & (2**52 - 1) == 2**40 + 5


def test_budget_thresholds_and_accounting():
    h = Heap(100 * MiB)
    assert h.units == 100 and (h.park_at, h.start_at, h.stop_at) == (3, 12, 22)
    small = Heap(4 * MiB)
    assert (small.park_at, small.start_at, small.stop_at) == (1, 2, 3)
    with pytest.raises(ValueError):
        Heap(2 * MiB)


def test_resize_moves_budget_and_marks():
    h = Heap(100 * MiB)
    oid = h.register(Owner())
    calls = []
    h.on_low_memory = lambda: calls.append("low")
    h.on_space = lambda: calls.append("space")
    for i in range(50):
        assert h.alloc(MiB - HEADER_SIZE, oid, i) is not None
    h.resize(40 * MiB)  # below what is in use: the evacuator is woken
    assert (h.units, h.budget_bytes) == (40, 40 * MiB)
    assert (h.park_at, h.start_at, h.stop_at) == (1, 5, 9)
    assert h.free_units == 40 - 50 and calls == ["low"]
    assert h.alloc(MiB - HEADER_SIZE, oid, 99) is None  # mutators wait
    h.resize(200 * MiB)
    assert h.free_units == 150 and calls[-1] == "space"
    assert h.alloc(MiB - HEADER_SIZE, oid, 99) is not None
    with pytest.raises(ValueError):
        h.resize(2 * MiB)


def test_a_segment_being_evacuated_is_freed_only_by_the_evacuator():
    # the evacuator parks on its write-backs with a victim in hand: if a
    # mutator's last free released the victim meanwhile, the evacuator's
    # retire would later free the segment a second time, reused by then
    h = Heap(8 * MiB)
    oid = h.register(Owner())
    locs = [h.alloc(300_000, oid, i) for i in range(4)]
    victim = h.segments[locs[0][0]]
    assert victim.sealed and locs[1][0] == victim.id
    victim.busy = True
    for seg_id, off in locs[:3]:
        if seg_id == victim.id:
            h.free(seg_id, off)
    assert victim.live == 0 and victim.id in h.segments  # not released while busy
    victim.pins += 1
    h.unpin(victim)
    assert victim.id in h.segments
    victim.busy = False
    h.retire(victim)
    assert victim.id not in h.segments


def test_bump_allocation_and_sealing():
    h = Heap(8 * MiB)
    oid = h.register(Owner())
    locs = [h.alloc(100_000, oid, i) for i in range(30)]
    assert all(loc is not None for loc in locs)
    # 10 objects of 100 kB (+8 B header) fit one 1 MiB segment
    segs = {s for s, _ in locs}
    assert len(segs) == 3
    assert h.used_bytes == 3 * MiB <= h.budget_bytes
    assert len(h.fifo) == 2  # two sealed, one current
    objs = h.objects(h.segments[locs[0][0]])
    assert objs[:2] == [
        (HEADER_SIZE, 100_000, 0),
        (HEADER_SIZE + align(HEADER_SIZE + 100_000), 100_000, 1),
    ]
    assert h.segments[locs[0][0]].owner == oid


def test_mutators_park_at_the_reserve_evacuator_may_use_it():
    h = Heap(4 * MiB)
    oid = h.register(Owner())
    got = [h.alloc(MiB // 2, oid, i) for i in range(8)]
    # 3 units for mutators (1 reserved): 2 objects of 512 KiB + header per... 1 per unit
    assert got.count(None) > 0
    assert h.free_units == h.park_at
    assert h.alloc(1000, oid, 99, evacuator=True) is not None
    assert h.used_bytes <= h.budget_bytes


def test_large_objects_take_whole_units():
    h = Heap(8 * MiB)
    oid = h.register(Owner())
    loc = h.alloc(3 * MiB, oid, 0)
    assert loc is not None
    assert h.used_bytes == 4 * MiB  # 3 MiB + header rounds up to 4 units
    seg, off = loc
    h.free(seg, off)
    assert h.used_bytes == 0 and h.free_units == 8


def test_freeing_every_object_frees_a_sealed_segment():
    h = Heap(8 * MiB)
    oid = h.register(Owner())
    locs = [h.alloc(200_000, oid, i) for i in range(6)]  # 5 fit a segment
    first = locs[0][0]
    for s, o in locs[:5]:
        h.free(s, o)
    assert first not in h.segments and h.segments_freed == 1


def test_scope_pins_delay_retirement():
    h = Heap(8 * MiB)
    oid = h.register(Owner())
    locs = [h.alloc(300_000, oid, i) for i in range(4)]
    seg = h.segments[locs[0][0]]
    with DerefScope() as scope:
        scope.pin(seg)
        h.retire(seg)
        assert seg.id in h.segments and seg.doomed
    assert seg.id not in h.segments


def test_stride_detector_needs_eight_equal_strides():
    d = StrideDetector(window=4)
    got = [d.record(i) for i in range(0, 18, 2)]  # 9 accesses: 8 strides of 2
    assert got[:8] == [None] * 8 and list(got[8]) == [18, 20, 22, 24]
    assert list(d.record(18)) == [26]  # keeps the window ahead, one at a time
    assert d.record(3) is None  # a stride change resets
    d2 = StrideDetector(window=2)
    preds = [d2.record(i) for i in range(100, 55, -5)]
    assert list(preds[8]) == [55, 50]
