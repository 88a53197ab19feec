"""Log-structured local memory: 1 MiB segments up to a byte budget.

    budget = N segments x 1 MiB (AIFM's region size)
    +--------+--------+--------+--------+-- ... --+
    | sealed | sealed | sealed |current | free    |   FIFO: oldest sealed first
    +--------+--------+--------+--------+-- ... --+
    object = [size u32 | slot u32] payload, 8-aligned

- Objects are bump-allocated into their owner's current segment (a segment
  holds one data structure's objects: `seg.owner`); when it is full it is
  sealed and queued FIFO (the evacuator's clock hand). When a mutator finds
  no segment free, every owner's bump segments are sealed, so the full ones
  of owners that stopped allocating become victims too. A segment is freed
  only whole: by the evacuator, or at once when its live bytes reach 0.
- Each object's 8-byte header holds its payload size and slot (the index of
  its metadata word in the owner's words), so the evacuator can walk a
  segment and ask the owner what each object is.
- Objects bigger than a segment get a dedicated segment of k whole units.
- Offsets within a segment fit 24 bits (runtime.pointer): segments are at
  most 16 MiB; a large object's segment holds it at offset 8.
- Accounting is exact: `used_bytes` counts whole segment units in use and
  never exceeds `budget_bytes`.
- Thresholds, in free segment units (DESIGN §5): the evacuator starts at
  12% free, stops at 22%; mutators needing a new segment park at 3% (that
  reserve is the evacuator's, for survivors). Minimums keep tiny heaps
  working: park 1, start park+1, stop start+1.

- Memory: a 1-unit segment is a block of the heap's arena
  (runtime.hugepages.Arena: private anonymous maps of 2 MiB or more, advised for
  huge pages, so a big heap's random reads miss the TLB less); a larger one
  is its own bytearray. A freed segment's buffer is kept for reuse (up to 64
  segments whole, the rest as arena blocks).

Compiled (kvcache/compiled.py): `Segment` and `Heap` are C classes
(heap.pxd); a segment's bytes are reached through `seg.data`, a pointer into
its buffer, and `alloc_at` is the allocation fast path (a bump in the
owner's current segment) for compiled callers.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

import cython

from runtime.hugepages import Arena

__all__ = ["HEADER", "HEADER_SIZE", "MAX_SEGMENT", "SEGMENT_SIZE", "Heap", "Segment", "align"]

SEGMENT_SIZE = 1 << 20
MAX_SEGMENT = 1 << 24  # offsets are 24-bit in a metadata word
HEADER = struct.Struct("<II")  # payload size, slot
HEADER_SIZE = 8
_HSZ = cython.declare(cython.Py_ssize_t, 8)  # HEADER_SIZE as a C constant
_U32 = struct.Struct("<I")
_NO_LOC = -1


def align(n: int) -> int:
    """`n` rounded up to a multiple of 8 (objects are 8-aligned)."""
    return (n + 7) & ~7


class Segment:
    """One region of local memory; `units` budget units (1 unless large)."""

    def __init__(self, heap: Heap, seg_id: int, size: int, units: int, buf: Any = None):
        self.heap = heap  # the heap this segment belongs to
        self.id = seg_id
        # `size` writable bytes: a block of the heap's arena (a memoryview), or a bytearray
        self.buf = bytearray(size) if buf is None else buf
        if cython.compiled:
            mem: cython.uchar[::1] = self.buf
            self.data = cython.address(mem[0])
        self.view = memoryview(self.buf)  # writable view of the whole segment
        self.rview = self.view.toreadonly()  # read-only view, sliced by derefs
        self.top = 0  # bump offset: next free byte
        self.live = 0  # bytes of live objects, headers included
        self.pins = 0  # DerefScopes holding views into this segment
        self.units = units  # budget units (segments) this one counts for
        self.owner = -1  # the data structure whose objects it holds
        self.sealed = False  # full: queued for evacuation
        self.doomed = False  # freed as soon as its pins drop to 0
        self.busy = False  # the evacuator is working on it: only it may free it

    def size_at(self, offset: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """The payload size recorded in the header of the object at `offset`."""
        if cython.compiled:
            return cython.cast(cython.p_uint, self.data + offset - _HSZ)[0]
        return _U32.unpack_from(self.buf, offset - HEADER_SIZE)[0]

    def slot_at(self, offset: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """The slot recorded in the header of the object at `offset`."""
        if cython.compiled:
            return cython.cast(cython.p_uint, self.data + offset - _HSZ)[1]
        return _U32.unpack_from(self.buf, offset - HEADER_SIZE + 4)[0]


class Heap:
    """The bounded local heap: segments, bump allocation, pins, FIFO order."""

    def __init__(
        self,
        budget_bytes: int,
        segment_size: int = SEGMENT_SIZE,
        start_free: float = 0.12,
        stop_free: float = 0.22,
        park_free: float = 0.03,
    ):
        if not 64 <= segment_size <= MAX_SEGMENT:
            raise ValueError(f"segment size {segment_size} B is not in 64..{MAX_SEGMENT}")
        units = budget_bytes // segment_size
        if units < 3:
            raise ValueError(f"budget {budget_bytes} B is under 3 segments of {segment_size} B")
        self.segment_size = segment_size
        self._marks = (park_free, start_free, stop_free)  # fractions of the budget
        self.free_units = 0  # may go negative for a while after a shrinking resize
        self.units = 0
        self.budget_bytes = 0
        self.park_at = self.start_at = self.stop_at = 0
        self._set_units(units)
        self.segments: dict[int, Segment] = {}  # id -> segment in use
        self.table: list[Segment | None] = []  # the same, by id (None: free id)
        self._spare: list[Segment] = []  # freed 1-unit segments, buffers reused
        self._arena = Arena(segment_size)  # 1-unit segments' memory, in huge pages where it can
        self._next_id = 0
        self._free_ids: list[int] = []
        self.fifo: deque[int] = deque()  # sealed segment ids, oldest first
        self.current: list[Segment | None] = []  # owner id -> its mutators' bump segment
        self.survivor: list[Segment | None] = []  # owner id -> its evacuator's bump segment
        self.owners: list[Any] = []  # owner id -> data structure (EvacHandler)
        self.on_low_memory = None  # callable: wake the evacuator
        self.on_space = None  # callable: segments were freed (wake parked allocs)
        # stats
        self.allocs = 0
        self.segments_freed = 0
        self.peak_used_bytes = 0

    def _set_units(self, units: int) -> None:
        park_free, start_free, stop_free = self._marks
        self.free_units += units - self.units
        self.units = units  # budget in segments
        self.budget_bytes = units * self.segment_size
        self.park_at = max(1, round(park_free * units))  # free units: mutators park
        self.start_at = max(self.park_at + 1, round(start_free * units))  # evacuator starts
        self.stop_at = max(self.start_at + 1, round(stop_free * units))  # evacuator stops

    def resize(self, budget_bytes: int) -> None:
        """Change the budget (memcached's cache_memlimit). Never parks.

        Growing frees room at once. Shrinking below what is in use leaves
        free_units negative: allocations wait and the evacuator frees
        segments until usage is back under the new budget's stop mark.
        """
        units = budget_bytes // self.segment_size
        if units < 3:
            raise ValueError(
                f"budget {budget_bytes} B is under 3 segments of {self.segment_size} B"
            )
        grew = units > self.units
        self._set_units(units)
        if self.free_units <= self.start_at and self.on_low_memory is not None:
            self.on_low_memory()
        if grew and self.on_space is not None:
            self.on_space()

    # -- owners --------------------------------------------------------------

    def register(self, owner: Any) -> int:
        """Register a data structure as an owner of objects; its owner id."""
        if len(self.owners) >= 0xFFFF:
            raise ValueError("too many data structures on one heap")
        self.owners.append(owner)
        self.current.append(None)
        self.survivor.append(None)
        return len(self.owners) - 1

    # -- accounting ----------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        """Bytes of segment units in use (above budget_bytes only just after a shrink)."""
        return (self.units - self.free_units) * self.segment_size

    @property
    def live_bytes(self) -> int:
        """Bytes of live objects, headers included."""
        return sum(s.live for s in self.segments.values())

    @property
    def low(self) -> bool:
        """True when free units are at or under the evacuator's start mark."""
        return self.free_units <= self.start_at

    def stats(self) -> dict[str, int]:
        """Exact accounting: budget, used, free segments, live bytes, counters."""
        return {
            "budget_bytes": self.budget_bytes,
            "used_bytes": self.used_bytes,
            "peak_used_bytes": self.peak_used_bytes,
            "free_segments": self.free_units,
            "segments": self.units,
            "live_bytes": self.live_bytes,
            "allocs": self.allocs,
            "segments_freed": self.segments_freed,
            "pinned_segments": sum(1 for seg in self.segments.values() if seg.pins),
        }

    # -- allocation ----------------------------------------------------------

    def alloc(
        self, size: int, owner: int, slot: int, evacuator: bool = False
    ) -> tuple[int, int] | None:
        """Room for a `size`-byte payload: (segment id, payload offset), or None.

        None means no segment could be had without dipping under the park
        mark (mutators) or at all (evacuator): the caller waits for space.
        Never parks.
        """
        loc = self.alloc_at(size, owner, slot, evacuator)
        if loc < 0:
            return None
        return loc >> 24, loc & 0xFFFFFF

    def alloc_at(
        self,
        size: cython.Py_ssize_t,
        owner: cython.int,
        slot: cython.Py_ssize_t,
        evacuator: cython.bint = False,
    ) -> cython.Py_ssize_t:
        """alloc() as one int, segment id << 24 | payload offset; -1 for None."""
        need: cython.Py_ssize_t = (_HSZ + size + 7) & ~7
        bumps: list = self.survivor if evacuator else self.current
        seg: Segment = bumps[owner]
        off: cython.Py_ssize_t
        if seg is None or seg.top + need > len(seg.buf):
            if need > self.segment_size:
                seg = self._new_segment(-(-need // self.segment_size), owner, evacuator)
                if seg is None:
                    if not evacuator:
                        self._seal_bumps()
                    return _NO_LOC
                self._write_header(seg, 0, size, slot)
                seg.top = seg.live = need
                self.allocs += 1
                self._seal(seg)  # a large object's segment holds it alone
                return seg.id << 24 | _HSZ
            seg = self._new_segment(1, owner, evacuator)
            if seg is None:
                if not evacuator:
                    self._seal_bumps()
                return _NO_LOC
            old = bumps[owner]
            if old is not None:
                self._seal(old)
            bumps[owner] = seg
        off = seg.top
        self._write_header(seg, off, size, slot)
        seg.top = off + need
        seg.live += need
        self.allocs += 1
        return seg.id << 24 | (off + _HSZ)

    def _write_header(
        self,
        seg: Segment,
        off: cython.Py_ssize_t,
        size: cython.Py_ssize_t,
        slot: cython.Py_ssize_t,
    ) -> cython.void:
        if cython.compiled:
            p = cython.cast(cython.p_uint, seg.data + off)
            p[0] = size
            p[1] = slot
        else:
            HEADER.pack_into(seg.buf, off, size, slot)

    def _new_segment(
        self, units: cython.Py_ssize_t, owner: cython.int, evacuator: cython.bint
    ) -> Segment:
        floor = 0 if evacuator else self.park_at
        if self.free_units - units < floor:
            if self.on_low_memory is not None:
                self.on_low_memory()
            return None
        self.free_units -= units
        used = self.used_bytes
        if used > self.peak_used_bytes:
            self.peak_used_bytes = used
        if units == 1 and self._spare:
            seg = self._spare.pop()
            seg.top = seg.live = seg.pins = 0
            seg.sealed = seg.doomed = seg.busy = False
        else:
            seg_id = self._free_ids.pop() if self._free_ids else self._next_id
            if seg_id == self._next_id:
                self._next_id += 1
            buf = self._arena.take() if units == 1 else None
            seg = Segment(self, seg_id, units * self.segment_size, units, buf)
        seg.owner = owner
        self.segments[seg.id] = seg
        table = self.table
        while len(table) <= seg.id:
            table.append(None)
        table[seg.id] = seg
        if self.free_units <= self.start_at and self.on_low_memory is not None:
            self.on_low_memory()
        return seg

    def _seal_bumps(self) -> cython.void:
        """Seal every owner's bump segments: out of room, they are the evacuator's victims.

        A segment holds one owner's objects, so a full one of an owner that
        stopped allocating would otherwise never be sealed, never evacuated.
        """
        for bumps in (self.current, self.survivor):
            for owner, seg in enumerate(bumps):
                if seg is not None:
                    bumps[owner] = None
                    self._seal(seg)

    def _seal(self, seg: Segment) -> cython.void:
        seg.sealed = True
        if seg.live == 0:
            self._release(seg)
        else:
            self.fifo.append(seg.id)

    # -- freeing -------------------------------------------------------------

    def free(self, seg_id: cython.Py_ssize_t, offset: cython.Py_ssize_t) -> cython.void:
        """The object whose payload is at (seg_id, offset) is dead."""
        seg: Segment = self.table[seg_id]
        assert seg is not None
        seg.live -= (_HSZ + seg.size_at(offset) + 7) & ~7
        if seg.live == 0 and seg.sealed and seg.pins == 0 and not seg.doomed and not seg.busy:
            self._release(seg)

    def retire(self, seg: Segment) -> None:
        """Free an evacuated segment now, or when its last pin is dropped."""
        if seg.pins:
            seg.doomed = True
        else:
            self._release(seg)

    def unpin(self, seg: Segment) -> cython.void:
        """Drop one pin; frees a doomed or emptied segment at its last pin."""
        seg.pins -= 1
        if seg.pins == 0 and not seg.busy and (seg.doomed or (seg.live == 0 and seg.sealed)):
            self._release(seg)

    def _release(self, seg: Segment) -> cython.void:
        if self.segments.pop(seg.id, None) is None:
            return
        self.table[seg.id] = None
        try:
            self.fifo.remove(seg.id)
        except ValueError:
            pass
        self.free_units += seg.units
        self.segments_freed += 1
        if seg.units == 1 and len(self._spare) < 64:
            self._spare.append(seg)
        else:
            if seg.units == 1:
                self._arena.give(seg.buf)
            self._free_ids.append(seg.id)
        if self.on_space is not None:
            self.on_space()

    # -- access --------------------------------------------------------------

    def view(self, seg_id: int, offset: int, size: int) -> memoryview:
        """A memoryview of `size` payload bytes at (seg_id, offset)."""
        seg = self.table[seg_id]
        assert seg is not None
        return seg.view[offset : offset + size]

    def payload_size(self, seg_id: int, offset: int) -> int:
        """The payload size recorded in an object's header."""
        seg = self.table[seg_id]
        assert seg is not None
        return seg.size_at(offset)

    def objects(self, seg: Segment) -> list[tuple[int, int, int]]:
        """(payload offset, size, slot) of every object in `seg`, in address order."""
        out = []
        off = 0
        buf = seg.buf
        top = seg.top
        unpack = HEADER.unpack_from
        while off < top:
            size, slot = unpack(buf, off)
            out.append((off + HEADER_SIZE, size, slot))
            off += align(HEADER_SIZE + size)
        return out
