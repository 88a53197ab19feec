"""Pauseless evacuation of cold objects (AIFM's evacuator, DESIGN §5).

One green thread. It sleeps until free segments fall to the start mark (12%
of the budget), then frees whole segments, oldest first (the FIFO is the
clock hand), until free segments reach the stop mark (22%):

    for each live object of the victim segment, ask its owner's words:
      dead / expired                 -> reclaim, no I/O
      hot (hotness > 0)              -> copy to a survivor segment, hotness /= 2
      cold, clean, far copy valid    -> drop the local copy, no I/O
      cold, dirty                    -> mark EVACUATING, write back in a batch
                                        (to every replica of it, with several
                                        far nodes); on the ack, if still marked,
                                        the object becomes far (or stays local
                                        and clean if it was touched meanwhile);
                                        if a mutator overtook it, or no answer
                                        came and a cache drops it, the owner
                                        hears of the copy the node may hold
      cold, dirty, no far node       -> drop if the owner may forget (a cache),
                                        else keep (copy to survivor)

Work happens in slices of about 100 us; between slices the evacuator yields
to the hub, so no request waits for a whole round. Pinned segments are skipped
(never waited on); a victim pinned while the evacuator yielded is given back
to the FIFO with its remaining objects in place. A mutator that writes an
EVACUATING object clears the mark and moves it, so the write-back's ack leaves
it alone. Owners are data structures implementing EvacHandler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import cython

from runtime import hub as _hub
from runtime.heap import HEADER_SIZE, Heap, Segment
from runtime.pointer import (
    DIRTY,
    EVACUATING,
    FAR,
    HOT_MASK,
    HOT_SHIFT,
    OFF_MASK,
    PRESENT,
    SEG_MAX,
    SEG_SHIFT,
    TAG_MASK,
    hotness,
    local_word,
    offset_of,
    segment_of,
)
from runtime.structures import Remoteable

if cython.compiled:
    from cython.cimports.cpython import array
    from cython.cimports.libc.string import memcpy
    from cython.cimports.runtime.farclient import _monotonic  # a C call: the slices' clock
else:
    from runtime.farclient import _monotonic

if TYPE_CHECKING:
    from runtime.manager import Manager

__all__ = ["EvacHandler", "Evacuator"]

log = logging.getLogger("runtime.evacuator")

_FLAGS = cython.declare(cython.ulonglong, DIRTY | FAR | TAG_MASK)  # what a moved word keeps
# the word's bits as C constants when compiled (module globals are looked up by name)
_PRESENT = cython.declare(cython.ulonglong, PRESENT)
_DIRTY = cython.declare(cython.ulonglong, DIRTY)
_FAR = cython.declare(cython.ulonglong, FAR)
_EVACUATING = cython.declare(cython.ulonglong, EVACUATING)
_HOT_SHIFT = cython.declare(cython.int, HOT_SHIFT)
_SEG_SHIFT = cython.declare(cython.int, SEG_SHIFT)
_SEG_MAX = cython.declare(cython.ulonglong, SEG_MAX)
_OFF_MASK = cython.declare(cython.ulonglong, OFF_MASK)
_HSZ = cython.declare(cython.Py_ssize_t, HEADER_SIZE)


def _word(owner: object, slot: cython.Py_ssize_t) -> cython.ulonglong:
    """owner.words[slot], read straight from the array when compiled."""
    if cython.compiled:
        words: array.array
        if isinstance(owner, Remoteable):
            words = cython.cast(Remoteable, owner).words  # a C field, no attribute lookup
        else:
            words = owner.words
        return words.data.as_ulonglongs[slot]
    return owner.words[slot]


def _set_word(owner: object, slot: cython.Py_ssize_t, w: cython.ulonglong) -> cython.void:
    """owner.words[slot] = w."""
    if cython.compiled:
        words: array.array
        if isinstance(owner, Remoteable):
            words = cython.cast(Remoteable, owner).words
        else:
            words = owner.words
        words.data.as_ulonglongs[slot] = w
    else:
        owner.words[slot] = w


# The owner calls of the scan: C calls for the runtime's structures (Remoteable's
# cpdef methods), a Python call for any other EvacHandler.


def _dead(owner: object, slot: cython.Py_ssize_t) -> cython.bint:
    """owner.evac_dead(slot)."""
    if cython.compiled and isinstance(owner, Remoteable):
        return cython.cast(Remoteable, owner).evac_dead(slot)
    return owner.evac_dead(slot)


def _reclaim(owner: object, slot: cython.Py_ssize_t) -> None:
    """owner.evac_reclaim(slot)."""
    if cython.compiled and isinstance(owner, Remoteable):
        cython.cast(Remoteable, owner).evac_reclaim(slot)
    else:
        owner.evac_reclaim(slot)


def _far(owner: object, slot: cython.Py_ssize_t) -> None:
    """owner.evac_far(slot)."""
    if cython.compiled and isinstance(owner, Remoteable):
        cython.cast(Remoteable, owner).evac_far(slot)
    else:
        owner.evac_far(slot)


def _forget(owner: object, slot: cython.Py_ssize_t) -> None:
    """owner.evac_forget(slot)."""
    if cython.compiled and isinstance(owner, Remoteable):
        cython.cast(Remoteable, owner).evac_forget(slot)
    else:
        owner.evac_forget(slot)


class EvacHandler(Protocol):
    """What a data structure gives the evacuator (AIFM's RegisterEvacHandler)."""

    words: Any  # array('Q'): one metadata word per slot
    may_forget: bool  # a cache: cold dirty objects may be dropped without a far node

    def evac_dead(self, slot: int) -> bool:
        """True if the object in `slot` is dead (expired): reclaim it, no I/O."""

    def evac_writeback(self, slot: int, data: memoryview) -> tuple[int, int, bytes, bytes] | None:
        """The far WRITE for a dirty object: (op, ds, frame body, far name); None: can't now.

        The name places the object when there are several far nodes.
        """

    def evac_written(self, slot: int, marked: int) -> None:
        """The far node acknowledged the write-back of the object (word `marked`)."""

    def evac_far(self, slot: int) -> None:
        """The object left local memory; its far copy is now the only one."""

    def evac_forget(self, slot: int) -> None:
        """The object was dropped without a far copy (a cache eviction)."""

    def evac_reclaim(self, slot: int) -> None:
        """The dead object was reclaimed."""

    def evac_unsure(self, body: bytes) -> None:
        """The far node may hold this write-back's bytes though the object moved on."""


class _Acks:
    """The far node's answers to one batch of write-backs; resumes the evacuator."""

    __slots__ = ("results", "left", "waiter")

    def __init__(self, n: int, waiter: _hub.Waiter) -> None:
        self.results: list = [None] * n  # status per write-back (None: failed, no answer)
        self.left = n
        self.waiter = waiter


class _Ack:
    """The callback of one write-back (an object, not a closure: no reference cycle)."""

    __slots__ = ("batch", "i")

    def __init__(self, batch: _Acks, i: int) -> None:
        self.batch = batch
        self.i = i

    def __call__(self, status: Any, body: Any) -> None:
        batch = self.batch
        batch.results[self.i] = status
        batch.left -= 1
        if batch.left == 0:
            batch.waiter.switch(None)


class Evacuator:
    """The evacuating green thread of one Manager."""

    def __init__(self, manager: Manager, slice_seconds: float = 100e-6):
        self.manager = manager
        self.heap = manager.heap
        self.slice_seconds = slice_seconds  # work between two yields to the hub
        self.running = False
        self._idle = None  # Waiter the idle evacuator parks on
        self._thread = None
        # stats
        self.rounds = 0  # segments evacuated
        self.survivors = 0  # hot objects copied
        self.clean_drops = 0  # cold clean objects dropped, no I/O
        self.writebacks = 0  # dirty objects written to the far node
        self.writeback_bytes = 0
        self.forgotten = 0  # dropped without a far copy (cache evictions)
        self.reclaimed = 0  # dead objects reclaimed
        self.write_failures = 0
        self.busy_seconds = 0.0  # time spent evacuating (slices)

    def stats(self) -> dict[str, float]:
        """Counters of what the evacuator did."""
        return {
            "evac_rounds": self.rounds,
            "evac_survivors": self.survivors,
            "clean_drops": self.clean_drops,
            "evacuations": self.writebacks,
            "evac_bytes": self.writeback_bytes,
            "evac_forgotten": self.forgotten,
            "evac_reclaimed": self.reclaimed,
            "evac_write_failures": self.write_failures,
            "evac_busy_seconds": round(self.busy_seconds, 6),
        }

    def start(self) -> None:
        """Start the evacuating green thread."""
        self.running = True
        self._thread = _hub.spawn(self._main)

    def stop(self) -> None:
        """Ask the green thread to end at its next wake-up."""
        self.running = False
        self.wake()

    def wake(self) -> None:
        """Free segments are low: resume the evacuator if it idles. Never parks."""
        w = self._idle
        if w is not None:
            self._idle = None
            self.manager.hub.schedule(w.switch, None)

    # -- the green thread ----------------------------------------------------

    def _main(self) -> None:
        heap = self.heap
        while self.running:
            if heap.free_units > heap.start_at:
                w = _hub.Waiter(self.manager.hub)
                self._idle = w
                w.get()
                continue
            progressed = False
            while self.running and heap.free_units < heap.stop_at:
                seg = self._pick_victim()
                if seg is None:
                    break
                self._evacuate(seg)
                progressed = True
            if not progressed:
                _hub.sleep(0.001)  # everything pinned or current: try again soon

    def _pick_victim(self) -> Segment | None:
        heap = self.heap
        for _ in range(len(heap.fifo)):
            seg_id = heap.fifo.popleft()
            seg = heap.segments.get(seg_id)
            if seg is None:
                continue
            if seg.pins:
                heap.fifo.append(seg_id)  # skip pinned: never wait on them
                continue
            return seg
        return None

    def _evacuate(self, seg: Segment) -> None:
        """Empty one victim segment, then free it or, if it must keep objects, requeue it."""
        seg.busy = True  # no mutator's free or unpin may release it under our feet
        try:
            keep = self._evacuate_objects(seg)
        finally:
            seg.busy = False
        heap = self.heap
        if keep:
            if seg.id in heap.segments and seg.id not in heap.fifo:
                heap.fifo.appendleft(seg.id)
            return
        self.rounds += 1
        heap.retire(seg)

    def _evacuate_objects(self, seg: Segment) -> cython.bint:
        """Move, drop or write back every live object; True if some must stay. May park."""
        heap: Heap = self.heap
        far = self.manager.far
        far_up: cython.bint = far is not None and far.available
        pending: list = []  # (owner, owner id, slot, marked word, op, ds, far name)
        bodies: list = []
        t0: cython.double = _monotonic()
        start: cython.double = t0
        now: cython.double
        aborted: cython.bint = False
        n: cython.Py_ssize_t = 0
        owner_id: cython.int = seg.owner  # a segment holds one owner's objects
        owner = heap.owners[owner_id]
        may_forget: cython.bint = owner.may_forget
        seg_id: cython.ulonglong = seg.id
        top: cython.Py_ssize_t = seg.top  # sealed: fixed while we walk it
        hdr: cython.Py_ssize_t = 0  # the object header's offset
        off: cython.Py_ssize_t
        size: cython.Py_ssize_t
        slot: cython.Py_ssize_t
        w: cython.ulonglong
        hot: cython.ulonglong
        while hdr < top:
            off = hdr + _HSZ
            size = seg.size_at(off)
            slot = seg.slot_at(off)
            hdr = off + ((size + 7) & ~7)
            n += 1
            if n & 31 == 0:
                now = _monotonic()
                if now - t0 > self.slice_seconds:
                    self.busy_seconds += now - start
                    _hub.yield_now()
                    t0 = start = _monotonic()
                    if seg.pins:
                        aborted = True
                        break
            w = _word(owner, slot)
            if not (w & _PRESENT) or (w >> _SEG_SHIFT) & _SEG_MAX != seg_id or w & _OFF_MASK != off:
                continue  # dead: a newer copy lives elsewhere
            if _dead(owner, slot):
                _reclaim(owner, slot)
                heap.free(seg_id, off)
                self.reclaimed += 1
                continue
            hot = (w >> _HOT_SHIFT) & 0xFF
            if hot and self._survive(seg, off, size, slot, owner_id, owner, w, hot >> 1):
                continue
            if not (w & _DIRTY) and (w & _FAR):
                _far(owner, slot)
                heap.free(seg_id, off)
                self.clean_drops += 1
                continue
            if far_up:
                req = owner.evac_writeback(slot, seg.view[off : off + size])
                if req is not None:
                    marked = w | _EVACUATING
                    _set_word(owner, slot, marked)
                    pending.append((owner, owner_id, slot, marked, req[0], req[1], req[3]))
                    bodies.append(req[2])
                    continue
            if may_forget:
                _forget(owner, slot)
                heap.free(seg_id, off)
                self.forgotten += 1
                continue
            if not self._survive(seg, off, size, slot, owner_id, owner, w, 0):
                aborted = True  # no room to keep it: leave the rest in place
                break
        self.busy_seconds += _monotonic() - start
        failures: cython.Py_ssize_t = self.write_failures
        if pending:
            self._write_back(pending, bodies)  # parks: mutators free objects meanwhile
        return (aborted or seg.pins or failures != self.write_failures) and self._has_live(seg)

    def _survive(
        self,
        seg: Segment,
        off: cython.Py_ssize_t,
        size: cython.Py_ssize_t,
        slot: cython.Py_ssize_t,
        owner_id: cython.int,
        owner: object,
        w: cython.ulonglong,
        hot: cython.ulonglong,
    ) -> cython.bint:
        """Copy a live object into a survivor segment with hotness `hot`; False: no room."""
        heap: Heap = self.heap
        loc: cython.Py_ssize_t = heap.alloc_at(size, owner_id, slot, True)
        if loc < 0:
            return False
        dseg: Segment = heap.table[loc >> 24]
        doff: cython.Py_ssize_t = loc & 0xFFFFFF
        if cython.compiled:
            memcpy(dseg.data + doff, seg.data + off, size)
        else:
            dseg.view[doff : doff + size] = seg.view[off : off + size]
        _set_word(owner, slot, local_word(dseg.id, doff, w & _FLAGS, hot))
        heap.free(seg.id, off)
        self.survivors += 1
        return True

    def _has_live(self, seg: Segment) -> cython.bint:
        """Does `seg` still hold an object its owner points at?"""
        owner = self.heap.owners[seg.owner]
        seg_id: cython.ulonglong = seg.id
        hdr: cython.Py_ssize_t = 0
        off: cython.Py_ssize_t
        w: cython.ulonglong
        while hdr < seg.top:
            off = hdr + _HSZ
            w = _word(owner, seg.slot_at(off))
            if w & _PRESENT and (w >> _SEG_SHIFT) & _SEG_MAX == seg_id and w & _OFF_MASK == off:
                return True
            hdr = off + ((seg.size_at(off) + 7) & ~7)
        return False

    def _write_back(self, pending: list, bodies: list[bytes]) -> None:
        """Send the batch, park until every ack, then settle each object. May park."""
        far = self.manager.far
        batch = _Acks(len(pending), _hub.Waiter(self.manager.hub))
        for i, (entry, body) in enumerate(zip(pending, bodies, strict=True)):
            far.submit_named(entry[4], entry[5], entry[6], body, _Ack(batch, i))
        batch.waiter.get()
        results = batch.results
        heap = self.heap
        for (owner, owner_id, slot, marked, _op, _ds, _name), status, body in zip(
            pending, results, bodies, strict=True
        ):
            w = owner.words[slot]
            if (w ^ marked) & ~HOT_MASK:
                # written or moved meanwhile: the mutator owns it now, and the
                # node holds (or, with no answer, may yet hold) an older copy
                if status is None or status == 0:
                    owner.evac_unsure(body)
                continue
            seg_id, off = segment_of(w), offset_of(w)
            seg = heap.segments[seg_id]
            if status != 0:  # 0 is OK; a status or an exception is a failure
                self.write_failures += 1
                w &= ~EVACUATING
                owner.words[slot] = w
                if owner.may_forget:
                    if status is None:  # no answer: the node may still apply it
                        owner.evac_unsure(body)
                    owner.evac_forget(slot)
                    heap.free(seg_id, off)
                    self.forgotten += 1
                elif not seg.pins:
                    size = heap.payload_size(seg_id, off)
                    self._survive(seg, off, size, slot, owner_id, owner, w, 0)
                continue
            self.writebacks += 1
            self.writeback_bytes += len(body)
            owner.evac_written(slot, marked)
            clean = (w & ~(EVACUATING | DIRTY)) | FAR
            owner.words[slot] = clean
            if seg.pins:
                continue  # in use: stays in place, clean; the segment is requeued
            hot = hotness(w)
            if hot:  # touched while in flight: keep it local, clean
                size = heap.payload_size(seg_id, off)
                if self._survive(seg, off, size, slot, owner_id, owner, clean, hot >> 1):
                    continue
            owner.evac_far(slot)
            heap.free(seg_id, off)
