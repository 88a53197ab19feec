"""runtime/hugepages.py: huge pages for the index arrays and the heap's segments.

Spec: a zeroed array of 2 MiB or more, a word array advised as it grows and
every arena map of 2 MiB or more are advised MADV_HUGEPAGE (the kernel shows
`hg` in the mapping's VmFlags); nothing else changes: arrays are zeros of
the asked type and length, arena blocks are distinct, writable and reused
once given back, and the heap keeps every byte written through them.
"""

from __future__ import annotations

import mmap

import pytest

from runtime.hashtable import RemHashTable
from runtime.heap import Heap
from runtime.hugepages import HUGE_PAGE, Arena, advise_array, thp_mode, zeroed_array
from runtime.manager import Manager

THP = thp_mode() in ("always", "madvise") and hasattr(mmap, "MADV_HUGEPAGE")
needs_thp = pytest.mark.skipif(not THP, reason="this kernel has no transparent huge pages")


def vm_flags(address: int) -> set[str]:
    """The VmFlags of this process's mapping that holds `address` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps", encoding="ascii") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


def address_of(view: memoryview) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@pytest.mark.parametrize("typecode, n", [("I", 0), ("I", 5), ("Q", 1 << 10), ("I", 1 << 20)])
def test_zeroed_array_is_zeros_of_its_type(typecode, n):
    a = zeroed_array(typecode, n)
    assert a.typecode == typecode
    assert len(a) == n
    assert not any(a)
    if n:
        a[n - 1] = 7
        assert a[n - 1] == 7 and not any(a[: n - 1])


@needs_thp
def test_big_zeroed_array_is_advised_and_small_one_is_not():
    big = zeroed_array("Q", HUGE_PAGE // 8 * 2)  # 4 MiB
    address, n = big.buffer_info()
    assert "hg" in vm_flags(address + n * 8 // 2)
    small = zeroed_array("Q", 1024)
    assert not advise_array(small)  # under 2 MiB: never advised (it shares malloc's heap)


@needs_thp
def test_word_array_is_advised_as_it_grows():
    mgr = Manager(8 << 20)  # no far node
    table = RemHashTable(mgr)
    n = HUGE_PAGE // 8  # the slot count at which the words reach 2 MiB
    for _ in range(n):
        table._new_slot()
    address, length = table.words.buffer_info()
    assert length == n
    assert "hg" in vm_flags(address + length * 8 // 2)


def test_arena_blocks_are_distinct_writable_and_reused():
    arena = Arena(256 * 1024)
    blocks = [arena.take() for _ in range(20)]  # more than one map's worth (8 a map)
    assert all(len(b) == 256 * 1024 and not b.readonly for b in blocks)
    for i, b in enumerate(blocks):
        b[0] = i
        b[-1] = i
    assert [(b[0], b[-1]) for b in blocks] == [(i, i) for i in range(20)]
    assert len(arena.maps) == 2 and arena.mapped_bytes == HUGE_PAGE + 8 * HUGE_PAGE
    addresses = {address_of(b) for b in blocks}
    assert len(addresses) == 20
    # private memory: a shared anonymous map is shmem, which THP does not back by default
    assert "sh" not in vm_flags(address_of(blocks[0]))
    arena.give(blocks[3])
    again = arena.take()
    assert address_of(again) == address_of(blocks[3]) and again[0] == 3
    with pytest.raises(ValueError):
        Arena(0)


@needs_thp
def test_arena_maps_are_advised():
    arena = Arena(128 * 1024)
    block = arena.take()
    assert arena.advised == 1
    assert "hg" in vm_flags(address_of(block))


def test_heap_segments_live_in_the_arena_and_keep_their_bytes():
    heap = Heap(64 * 128 * 1024, segment_size=128 * 1024)
    heap.register(object())
    locs = []
    for i in range(2000):
        seg_id, off = heap.alloc(1000, owner=0, slot=i)
        heap.table[seg_id].view[off : off + 1000] = bytes([i % 251]) * 1000
        locs.append((seg_id, off, i))
    seg = heap.table[locs[0][0]]
    assert isinstance(seg.buf, memoryview) and seg.buf.obj in heap._arena.maps
    for seg_id, off, i in locs:
        assert bytes(heap.view(seg_id, off, 1000)) == bytes([i % 251]) * 1000
        assert heap.table[seg_id].slot_at(off) == i
