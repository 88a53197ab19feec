"""Log-structured local memory: 1 MiB segments up to a byte budget.

    budget = N segments x 1 MiB (AIFM's region size)
    +--------+--------+--------+--------+-- ... --+
    | sealed | sealed | sealed |current | free    |   FIFO: oldest sealed first
    +--------+--------+--------+--------+-- ... --+
    object = [size u32 | slot u32 | owner u16 | pad u16 | pad u32] payload, 8-aligned

- Objects are bump-allocated into the current segment; when it is full it is
  sealed and queued FIFO (the evacuator's clock hand). A segment is freed
  only whole: by the evacuator, or at once when its live bytes reach 0.
- Each object's 16-byte header names its owner (a registered data structure)
  and slot (the index of its metadata word), so the evacuator can walk a
  segment and ask the owner what each object is.
- Objects bigger than a segment get a dedicated segment of k whole units.
- Accounting is exact: `used_bytes` counts whole segment units in use and
  never exceeds `budget_bytes`.
- Thresholds, in free segment units (DESIGN §5): the evacuator starts at
  12% free, stops at 22%; mutators needing a new segment park at 3% (that
  reserve is the evacuator's, for survivors). Minimums keep tiny heaps
  working: park 1, start park+1, stop start+1.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

__all__ = ["HEADER", "HEADER_SIZE", "SEGMENT_SIZE", "Heap", "Segment"]

SEGMENT_SIZE = 1 << 20
HEADER = struct.Struct("<IIHHI")  # payload size, slot, owner id, reserved, reserved
HEADER_SIZE = HEADER.size  # 16


def _align(n: int) -> int:
    return (n + 7) & ~7


class Segment:
    """One region of local memory; `units` budget units (1 unless large)."""

    __slots__ = (
        "id",
        "buf",
        "top",
        "live",
        "pins",
        "units",
        "sealed",
        "doomed",
        "busy",
        "view",
        "rview",
        "heap",
    )

    def __init__(self, heap: Heap, seg_id: int, size: int, units: int):
        self.heap = heap  # the heap this segment belongs to
        self.id = seg_id
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)  # writable view of the whole segment
        self.rview = self.view.toreadonly()  # read-only view, sliced by derefs
        self.top = 0  # bump offset: next free byte
        self.live = 0  # bytes of live objects, headers included
        self.pins = 0  # DerefScopes holding views into this segment
        self.units = units  # budget units (segments) this one counts for
        self.sealed = False  # full: queued for evacuation
        self.doomed = False  # freed as soon as its pins drop to 0
        self.busy = False  # the evacuator is working on it: only it may free it


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
        units = budget_bytes // segment_size
        if units < 3:
            raise ValueError(f"budget {budget_bytes} B is under 3 segments of {segment_size} B")
        self.segment_size = segment_size
        self._marks = (park_free, start_free, stop_free)  # fractions of the budget
        self.free_units = 0  # may go negative for a while after a shrinking resize
        self.units = 0
        self._set_units(units)
        self.segments: dict[int, Segment] = {}  # id -> segment in use
        self._spare: list[Segment] = []  # freed 1-unit segments, buffers reused
        self._next_id = 0
        self._free_ids: list[int] = []
        self.fifo: deque[int] = deque()  # sealed segment ids, oldest first
        self.current: Segment | None = None  # mutators' bump segment
        self.survivor: Segment | None = None  # the evacuator's bump segment
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
        need = _align(HEADER_SIZE + size)
        seg = self.survivor if evacuator else self.current
        if seg is None or seg.top + need > len(seg.buf):
            if need > self.segment_size:
                seg = self._new_segment(-(-need // self.segment_size), evacuator)
                if seg is None:
                    return None
                HEADER.pack_into(seg.buf, 0, size, slot, owner, 0, 0)
                seg.top = seg.live = need
                self.allocs += 1
                self._seal(seg)  # a large object's segment holds it alone
                return seg.id, HEADER_SIZE
            else:
                seg = self._new_segment(1, evacuator)
                if seg is None:
                    return None
                old = self.survivor if evacuator else self.current
                if old is not None:
                    self._seal(old)
                if evacuator:
                    self.survivor = seg
                else:
                    self.current = seg
        off = seg.top
        HEADER.pack_into(seg.buf, off, size, slot, owner, 0, 0)
        seg.top = off + need
        seg.live += need
        self.allocs += 1
        return seg.id, off + HEADER_SIZE

    def _new_segment(self, units: int, evacuator: bool) -> Segment | None:
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
            seg = Segment(self, seg_id, units * self.segment_size, units)
        self.segments[seg.id] = seg
        if self.free_units <= self.start_at and self.on_low_memory is not None:
            self.on_low_memory()
        return seg

    def _seal(self, seg: Segment) -> None:
        seg.sealed = True
        if seg.live == 0:
            self._release(seg)
        else:
            self.fifo.append(seg.id)

    # -- freeing -------------------------------------------------------------

    def free(self, seg_id: int, offset: int) -> None:
        """The object whose payload is at (seg_id, offset) is dead."""
        seg = self.segments[seg_id]
        size = struct.unpack_from("<I", seg.buf, offset - HEADER_SIZE)[0]
        seg.live -= _align(HEADER_SIZE + size)
        if seg.live == 0 and seg.sealed and seg.pins == 0 and not seg.doomed and not seg.busy:
            self._release(seg)

    def retire(self, seg: Segment) -> None:
        """Free an evacuated segment now, or when its last pin is dropped."""
        if seg.pins:
            seg.doomed = True
        else:
            self._release(seg)

    def unpin(self, seg: Segment) -> None:
        """Drop one pin; frees a doomed or emptied segment at its last pin."""
        seg.pins -= 1
        if seg.pins == 0 and not seg.busy and (seg.doomed or (seg.live == 0 and seg.sealed)):
            self._release(seg)

    def _release(self, seg: Segment) -> None:
        if self.segments.pop(seg.id, None) is None:
            return
        try:
            self.fifo.remove(seg.id)
        except ValueError:
            pass
        self.free_units += seg.units
        self.segments_freed += 1
        if seg.units == 1 and len(self._spare) < 64:
            self._spare.append(seg)
        else:
            self._free_ids.append(seg.id)
        if self.on_space is not None:
            self.on_space()

    # -- access --------------------------------------------------------------

    def view(self, seg_id: int, offset: int, size: int) -> memoryview:
        """A memoryview of `size` payload bytes at (seg_id, offset)."""
        return self.segments[seg_id].view[offset : offset + size]

    def payload_size(self, seg_id: int, offset: int) -> int:
        """The payload size recorded in an object's header."""
        return struct.unpack_from("<I", self.segments[seg_id].buf, offset - HEADER_SIZE)[0]

    def objects(self, seg: Segment):
        """Yield (payload offset, size, slot, owner id) for every object in `seg`."""
        off = 0
        buf = seg.buf
        top = seg.top
        unpack = HEADER.unpack_from
        while off < top:
            size, slot, owner, _, _ = unpack(buf, off)
            yield off + HEADER_SIZE, size, slot, owner
            off += _align(HEADER_SIZE + size)
