"""Remoteable data structures: RemBox and RemArray (AIFM's library).

Every structure owns one metadata word per object (runtime.pointer) in an
`array('Q')`, registers with the Manager as an evacuation handler, and is
constructed on the far node through the FarClient. Dereferences go through
a DerefScope:

    with DerefScope() as scope:
        v = arr.at(scope, i)          # read-only view; may park on a far fetch
        w = arr.at_mut(scope, i)      # writable view; marks the element dirty
        n = arr.at(scope, j, nt=True) # non-temporal: not kept local

- A resident dereference is: one word test, a hotness bump, a pin, a slice.
- A far dereference parks only the calling green thread; concurrent fetches
  of one object share one far read. From the hub it raises WouldPark first.
- Fetched objects are installed clean (the far copy stays valid), so
  evicting them again costs no I/O. Writes mark them dirty.
- Writing an object under write-back (EVACUATING) clears the mark and moves
  it, so the evacuator's ack leaves the new value alone.
- An object whose only copy was on a far node that restarted raises
  FarDataLost (never wrong data).
- With several far nodes (runtime/fartier.py) requests name their object
  (`submit_named`) so the tier can place it; a node that rejoins cleared
  makes resident objects that had a copy there dirty (`on_far_node_cleared`),
  so they are written back to every replica. Array ops (sum, checksum, copy)
  run at the node only when one node holds the whole array; over several they
  are computed here, from the elements.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any

import cython

from protocol.far import (
    DsType,
    Op,
    Status,
    decode_compute_reply,
    decode_item,
    decode_message,
    encode_compute,
    encode_compute_args,
    encode_index,
    encode_name,
    encode_write,
)
from runtime import hub as _hub
from runtime.errors import FarDataLost, FarMemoryError, FarUnavailable
from runtime.farclient import FarReply
from runtime.heap import Segment
from runtime.hugepages import zeroed_array
from runtime.pointer import (
    DIRTY,
    EVACUATING,
    FAR,
    HOT_DEREF,
    HOT_MAX,
    HOT_SHIFT,
    OFF_MASK,
    PRESENT,
    SEG_MAX,
    SEG_SHIFT,
    far_word,
    local_word,
    offset_of,
    segment_of,
)
from runtime.prefetch import StrideDetector

if TYPE_CHECKING:
    from runtime.manager import Manager
    from runtime.scope import DerefScope

__all__ = ["Countdown", "RemArray", "RemBox", "Remoteable"]

_HOT_MASK = HOT_MAX << HOT_SHIFT
_HOT_SET = HOT_DEREF << HOT_SHIFT  # hotness a deref sets (stored only if cooler)
_NOT_HOT = ~_HOT_MASK
LOST = DIRTY  # a non-present word with DIRTY: the far copy was lost
LOCAL_OP_BATCH = 64  # elements read per park by array ops computed here (several nodes)
# the same as C constants when compiled (module globals are looked up by name)
_C_PRESENT = cython.declare(cython.ulonglong, PRESENT)
_C_HOT_MASK = cython.declare(cython.ulonglong, HOT_MAX << HOT_SHIFT)
_C_HOT_SET = cython.declare(cython.ulonglong, HOT_DEREF << HOT_SHIFT)
_C_NOT_HOT = cython.declare(cython.ulonglong, ~(HOT_MAX << HOT_SHIFT) & ((1 << 64) - 1))
_C_SEG_SHIFT = cython.declare(cython.int, SEG_SHIFT)
_C_SEG_MAX = cython.declare(cython.ulonglong, SEG_MAX)
_C_OFF_MASK = cython.declare(cython.ulonglong, OFF_MASK)


class _SlotFetch(FarReply):
    """A far read of one slot of a structure; its reply callback.

    An object, not a closure per read: compiled, the far client reaches
    `done` by a C call and `done` reaches `_slot_fetched` by another, where a
    lambda went through Python's call protocol twice.
    """

    def __init__(self, structure: Remoteable, slot: cython.Py_ssize_t) -> None:
        self.structure = structure
        self.slot = slot

    def done(self, status: Any, body: Any) -> None:
        """The far node's reply (the FarClient's callback, hub)."""
        self.structure._slot_fetched(self.slot, status, body)


class _Batch:
    """One park for many far reads: results by slot, the first error."""

    __slots__ = ("waiter", "left", "results", "error")

    def __init__(self, waiter: _hub.Waiter):
        self.waiter = waiter
        self.left = 0  # reads not answered yet
        self.results: dict[int, bytes] = {}
        self.error: BaseException | None = None


class _BatchSlot:
    """Stands in a fetch's waiter list for one slot of a _Batch (hub side)."""

    __slots__ = ("batch", "slot")

    def __init__(self, batch: _Batch, slot: int):
        self.batch = batch
        self.slot = slot

    def switch(self, value: bytes) -> None:
        self.batch.results[self.slot] = value
        self._done()

    def throw(self, exc: BaseException) -> None:
        if self.batch.error is None:
            self.batch.error = exc
        self._done()

    def _done(self) -> None:
        b = self.batch
        b.left -= 1
        if b.left == 0:
            b.waiter.switch(None)  # before get() (a synchronous failure) it is just kept


class Countdown:
    """A re-replication's tally: done({name: seen to}) once `left` names are (one())."""

    def __init__(self, left: int, done: Any) -> None:
        self.left = left  # names not seen to yet
        self.done = done
        self.results: dict = {}

    def one(self, name: Any, ok: bool) -> None:
        """`name` seen to (ok) or not (a read or write got no answer)."""
        self.results[name] = ok
        self.left -= 1
        if self.left == 0:
            self.done(self.results)


class Remoteable:
    """Base of remoteable structures: words, far identity, fetch and install."""

    may_forget = False  # a cache may drop cold dirty objects; data structures may not
    kind = DsType.BOX

    def __init__(self, manager: Manager, slots: int, params: dict):
        self.manager = manager
        self.heap = manager.heap
        self.words = zeroed_array("Q", slots)  # one metadata word per slot
        self.owner_id = manager.register(self)
        far = manager.far
        self.far_ds = far.register(self.kind, params, self) if far is not None else None
        self._inflight: dict[int, list[_hub.Waiter]] = {}  # slot -> fetchers waiting
        self._copying: dict[int, object] = {}  # slot -> re-replication read in flight

    # -- metadata words (a C pointer into the array when compiled) --------------

    def _w(self, slot: cython.Py_ssize_t) -> cython.ulonglong:
        """The metadata word of `slot`."""
        if cython.compiled:
            return self.words.data.as_ulonglongs[slot]
        return self.words[slot]

    def _set_w(self, slot: cython.Py_ssize_t, w: cython.ulonglong) -> cython.void:
        """Store the metadata word of `slot`."""
        if cython.compiled:
            self.words.data.as_ulonglongs[slot] = w
        else:
            self.words[slot] = w

    # -- naming on the far node ----------------------------------------------

    def far_name(self, slot: int) -> bytes:
        """The object's name on the far node."""
        return encode_index(slot)

    # -- local access ----------------------------------------------------------

    def _view(self, scope: DerefScope, slot: int, w: int) -> memoryview:
        """Writable view of a present object; bumps hotness and pins its segment."""
        if w & _HOT_MASK < _HOT_SET:
            self.words[slot] = (w & _NOT_HOT) | _HOT_SET
        seg = self.heap.segments[(w >> SEG_SHIFT) & SEG_MAX]
        seg.pins += 1
        scope._pins.append(seg)
        off = w & OFF_MASK
        return seg.view[off : off + self.heap.payload_size(seg.id, off)]

    def _install(self, slot: int, data: bytes, flags: int, park: bool = True) -> int | None:
        """Copy `data` into the heap as `slot`'s object; its new word. May park.

        With park=False returns None when no room is free (never parks).
        Frees the slot's previous local copy.
        """
        mgr = self.manager
        if park:
            loc = mgr.alloc(len(data), self.owner_id, slot)
        else:
            loc = mgr.try_alloc(len(data), self.owner_id, slot)
            if loc is None:
                return None
        seg_id, off = loc
        self.heap.segments[seg_id].view[off : off + len(data)] = data
        old = self.words[slot]
        w = local_word(seg_id, off, flags, 1)
        self.words[slot] = w
        if old & PRESENT:
            self.heap.free(segment_of(old), offset_of(old))
        return w

    # -- far access ------------------------------------------------------------

    def _far_ds(self) -> int:
        """This structure's id on the far node, constructing it if need be. May park."""
        st = self.far_ds
        if st is None:
            raise FarUnavailable("no far node for this structure")
        if not st.ds:
            far = self.manager.far
            if not far.available:
                raise FarUnavailable("far node unavailable")
            far.construct(st)
        return st.ds

    def _fetch(self, slot: int) -> bytes:
        """The far copy of `slot`, sharing one read among concurrent fetchers. May park."""
        _hub.check_can_park()
        waiters = self._inflight.get(slot)
        w = _hub.Waiter(self.manager.hub)
        if waiters is not None:
            waiters.append(w)
            return w.get()
        self._inflight[slot] = [w]
        far = self.manager.far
        if far is None:
            del self._inflight[slot]
            raise FarUnavailable("no far node")
        self.manager.counters["far_reads"] += 1
        name = self.far_name(slot)
        far.submit_named(Op.READ, self._far_ds(), name, encode_name(name), _SlotFetch(self, slot))
        return w.get()

    def _fetch_many(self, slots: list[int]) -> dict[int, bytes]:
        """Far copies of several slots: every read is sent, then one park. May park."""
        _hub.check_can_park()
        far = self.manager.far
        if far is None:
            raise FarUnavailable("no far node")
        ds = self._far_ds()
        batch = _Batch(_hub.Waiter(self.manager.hub))
        unique = list(dict.fromkeys(slots))
        batch.left = len(unique)  # all counted first: a synchronous failure can't end it early
        for slot in unique:
            waiters = self._inflight.get(slot)
            if waiters is not None:
                waiters.append(_BatchSlot(batch, slot))
                continue
            self._inflight[slot] = [_BatchSlot(batch, slot)]
            self.manager.counters["far_reads"] += 1
            name = self.far_name(slot)
            far.submit_named(Op.READ, ds, name, encode_name(name), _SlotFetch(self, slot))
        batch.waiter.get()
        if batch.error is not None:
            raise batch.error
        return batch.results

    def _slot_fetched(self, slot: cython.Py_ssize_t, status: Any, body: Any) -> None:
        """The reply to a far read of `slot`: its waiters resumed with the value or an error."""
        waiters = self._inflight.pop(slot, None)
        if waiters is None:
            return
        if status is None:
            exc: BaseException = body
        elif status == Status.OK:
            value = decode_item(body)[3]
            self.manager.counters["far_read_bytes"] += len(value)
            for w in waiters:
                w.switch(value)
            return
        elif status == Status.NOT_FOUND:
            exc = FarDataLost(f"far copy of slot {slot} is gone")
        else:
            exc = FarMemoryError(f"far read failed: {Status(status).name} {decode_message(body)}")
        for w in waiters:
            w.throw(exc)

    def _far_call(self, op: int, body: bytes) -> bytes:
        """A request on this structure's far copy; its OK reply body. May park."""
        status, rbody = self.manager.far.call(op, self._far_ds(), body)
        if status != Status.OK:
            raise FarMemoryError(f"far {Op(op).name} failed: {Status(status).name} {rbody!r}")
        return rbody

    # -- evacuation handler (runtime.evacuator.EvacHandler) -------------------

    def evac_dead(self, slot: cython.Py_ssize_t) -> cython.bint:
        """Nothing expires in a plain structure."""
        return False

    def evac_writeback(self, slot: int, data: memoryview) -> tuple[int, int, bytes, bytes] | None:
        """The far WRITE of a dirty object; None while the structure has no far id."""
        st = self.far_ds
        if st is None or not st.ds:
            return None
        self.manager.counters["far_writes"] += 1
        self._copying.pop(slot, None)  # a re-replication read in flight is older than this
        name = self.far_name(slot)
        return Op.WRITE, st.ds, encode_write(name, bytes(data)), name

    def evac_written(self, slot: int, marked: int) -> None:
        """A write-back of the object (word `marked`) was acknowledged."""

    def evac_far(self, slot: cython.Py_ssize_t) -> None:
        """The object now lives only on the far node."""
        self.words[slot] = far_word(slot, 0)

    def evac_forget(self, slot: cython.Py_ssize_t) -> None:
        """Plain structures never forget; the evacuator keeps their objects."""
        raise AssertionError("a structure that may not forget was asked to")

    def evac_reclaim(self, slot: cython.Py_ssize_t) -> None:
        """Dead objects do not exist in plain structures."""
        self.words[slot] = 0

    def evac_unsure(self, body: bytes) -> None:
        """A write-back (WRITE `body`) the node may yet apply no longer matches the object.

        Plain structures keep such objects local and dirty: their next
        write-back overwrites whatever the node holds.
        """

    def on_far_back(self) -> None:
        """The far node answers again after being down or stalled."""

    def on_far_node_cleared(self, index: int) -> None:
        """Node `index` of a tier rejoined empty: resident objects with a copy there go dirty.

        They keep FAR (other replicas may hold identical copies) and are
        written back to every replica again. Far-only objects are left: a
        read fails over to another replica, or raises FarDataLost.
        """
        far = self.manager.far
        st = self.far_ds
        if far is None or st is None:
            return
        words = self.words
        for i, w in enumerate(words):
            if w & PRESENT and w & FAR and index in far.replicas_of(st.ds, self.far_name(i)):
                words[i] = w | DIRTY

    def rereplicate(self, names: list, done: Any, skip: int = -1) -> None:
        """Bring the far copies of objects `names` to their replica sets (runtime.rereplicate).

        A resident object with a far copy goes dirty: its write-back reaches
        every replica. A far-only one is read and, unless it was written back
        meanwhile (that reached every replica), written to its replica set
        but node `skip` (the sweep's source, which holds it).
        done({name: seen to}) runs once every one is. Never parks.
        """
        far = self.manager.far
        st = self.far_ds
        one = Countdown(len(names), done).one
        for name in names:
            slot = int.from_bytes(name, "little") if len(name) == 8 else -1
            if not 0 <= slot < len(self.words):
                one(name, True)  # no such object here: nothing to copy
                continue
            w = self._w(slot)
            if w & PRESENT or not w & FAR:
                if w & PRESENT and w & FAR:
                    self._set_w(slot, w | DIRTY)
                one(name, True)
                continue
            if far is None or not far.available or st is None or not st.ds:
                one(name, False)
                continue
            token = self._copying[slot] = object()
            far.submit_named(
                Op.READ,
                st.ds,
                name,
                encode_name(name),
                lambda status, body, slot=slot, name=name, token=token: self._recopy(
                    slot, name, token, status, body, skip, one
                ),
            )

    def _recopy(
        self, slot: int, name: bytes, token: object, status: Any, body: Any, skip: int, one: Any
    ) -> None:
        """A re-replication read landed (hub): write it to the replica set, if still current."""
        if self._copying.get(slot) is not token:
            one(name, True)  # written back since: that write reached every replica
            return
        del self._copying[slot]
        if status is None:
            one(name, False)
            return
        w = self._w(slot)
        if status != Status.OK or (w & PRESENT and w & DIRTY):
            one(name, True)  # no copy left anywhere, or changed here: its write-back goes
            return
        st = self.far_ds
        self.manager.counters["far_recopies"] += 1
        self.manager.far.copy_named(
            st.ds,
            name,
            encode_write(name, decode_item(body)[3]),
            skip,
            lambda s, b: one(name, s == Status.OK),
        )

    def on_far_reset(self) -> None:
        """The far node restarted: far-only objects are lost, local ones dirty."""
        words = self.words
        for i, w in enumerate(words):
            if w & PRESENT:
                words[i] = (w & ~FAR) | DIRTY
            elif w & FAR:
                words[i] = LOST

    def _flush(self, slots: range) -> None:
        """Write back every dirty resident object in `slots`; they stay local, clean. May park."""
        far = self.manager.far
        ds = self._far_ds()
        todo = []
        for i in slots:
            w = self.words[i]
            if w & PRESENT and w & DIRTY and not w & EVACUATING:
                todo.append(i)
        if not todo:
            return
        waiter = _hub.Waiter(self.manager.hub)
        left = [len(todo)]
        errors: list[Any] = []

        def done(status: Any, body: Any) -> None:
            if status != Status.OK:
                errors.append(body)
            left[0] -= 1
            if left[0] == 0:
                waiter.switch(None)

        snapshot = {}
        for i in todo:
            w = self.words[i]
            off = offset_of(w)
            data = bytes(
                self.heap.view(segment_of(w), off, self.heap.payload_size(segment_of(w), off))
            )
            snapshot[i] = w
            self._copying.pop(i, None)
            self.manager.counters["far_writes"] += 1
            name = self.far_name(i)
            far.submit_named(Op.WRITE, ds, name, encode_write(name, data), done)
        waiter.get()
        if errors:
            err = errors[0]
            raise (
                err
                if isinstance(err, BaseException)
                else FarMemoryError(f"far write failed: {err!r}")
            )
        for i, w in snapshot.items():
            if self.words[i] == w:
                self.words[i] = (w & ~DIRTY) | FAR


class RemArray(Remoteable):
    """A fixed-length array of fixed-size elements in far memory (AIFM's RemArray)."""

    kind = DsType.ARRAY

    def __init__(self, manager: Manager, elem_size: int, length: int, prefetch: bool = True):
        if elem_size <= 0 or length <= 0:
            raise ValueError("elem_size and length must be positive")
        self.elem_size = elem_size  # bytes per element
        self.length = length  # elements
        self._zero = bytes(elem_size)
        self.prefetcher = StrideDetector() if prefetch else None
        super().__init__(manager, length, {"elem_size": elem_size, "length": length})
        self._segments = self.heap.segments  # the heap's id -> segment dict

    def __len__(self) -> int:
        return self.length

    def _check(self, i: int) -> None:
        """IndexError unless 0 <= i < length."""
        if not 0 <= i < self.length:
            raise IndexError(f"RemArray index {i} out of range 0..{self.length - 1}")

    def at(self, scope: DerefScope, i: cython.Py_ssize_t, nt: cython.bint = False) -> memoryview:
        """A read-only view of element i, valid while `scope` lasts. May park."""
        if i < 0 or i >= self.length:
            self._check(i)
        w: cython.ulonglong = self._w(i)
        if self.prefetcher is not None:
            ahead = self.prefetcher.record(i)
            if ahead is not None:
                self._prefetch(ahead)
        seg: Segment
        off: cython.Py_ssize_t
        if w & _C_PRESENT:  # the hot path: one word test, a pin, a slice
            if w & _C_HOT_MASK < _C_HOT_SET:
                self._set_w(i, (w & _C_NOT_HOT) | _C_HOT_SET)
            seg = self.heap.table[(w >> _C_SEG_SHIFT) & _C_SEG_MAX]
            seg.pins += 1
            scope._pins.append(seg)
            off = w & _C_OFF_MASK
            return seg.rview[off : off + self.elem_size]
        if w == 0:
            return memoryview(self._zero)  # never written: zeros, nothing to fetch
        if w == LOST:
            raise FarDataLost(f"element {i}: its far copy was lost")
        data = self._fetch(i)
        w = self.words[i]
        if w & PRESENT:  # installed meanwhile (a prefetch or another writer)
            return self._view(scope, i, w).toreadonly()
        if nt:
            self.manager.counters["nt_reads"] += 1
            return memoryview(data)
        w = self._install(i, data, FAR)
        return self._view(scope, i, w).toreadonly()

    def at_many(self, scope: DerefScope, indices: list[int], nt: bool = False) -> list[memoryview]:
        """Read-only views of several elements; all far fetches go out before one park.

        The request is the prefetch hint (DESIGN §2): a green thread reading
        many elements parks once, not once per element. May park.
        """
        words = self.words
        missing = []
        for i in indices:
            if i < 0:
                self._check(i)
            w = words[i]
            if not w & PRESENT and w != 0:
                if w == LOST:
                    raise FarDataLost(f"element {i}: its far copy was lost")
                missing.append(i)
        fetched = self._fetch_many(missing) if missing else {}
        out = []
        for i in indices:
            w = words[i]
            if w & PRESENT:
                out.append(self._view(scope, i, w).toreadonly())
            elif w == 0:
                out.append(memoryview(self._zero))
            elif nt:
                self.manager.counters["nt_reads"] += 1
                out.append(memoryview(fetched[i]))
            else:
                w = self._install(i, fetched[i], FAR)
                out.append(self._view(scope, i, w).toreadonly())
        return out

    def at_mut(self, scope: DerefScope, i: int) -> memoryview:
        """A writable view of element i; the element becomes dirty. May park."""
        self._check(i)
        w = self.words[i]
        if w & PRESENT and not w & EVACUATING:
            w |= DIRTY
            self.words[i] = w
            return self._view(scope, i, w)
        if w & PRESENT:  # under write-back: move it so the ack leaves it alone
            data = bytes(self.heap.view(segment_of(w), offset_of(w), self.elem_size))
        elif w == 0:
            data = self._zero
        elif w == LOST:
            raise FarDataLost(f"element {i}: its far copy was lost")
        else:
            data = self._fetch(i)
            w2 = self.words[i]
            if w2 & PRESENT:
                return self.at_mut(scope, i)
        flags = DIRTY | (w & FAR)
        w = self._install(i, data, flags)
        return self._view(scope, i, w)

    def write(self, i: int, data: bytes) -> None:
        """Overwrite element i with `data` (exactly elem_size bytes). May park."""
        self._check(i)
        if len(data) != self.elem_size:
            raise ValueError(f"element is {self.elem_size} bytes, got {len(data)}")
        w = self.words[i]
        if w & PRESENT and not w & EVACUATING:
            self.heap.view(segment_of(w), offset_of(w), self.elem_size)[:] = data
            self.words[i] = w | DIRTY
            return
        self._install(i, data, DIRTY | (w & FAR))

    def read(self, i: int) -> bytes:
        """A copy of element i. May park."""
        from runtime.scope import DerefScope

        with DerefScope() as scope:
            return bytes(self.at(scope, i))

    def _prefetch(self, indices: range) -> None:
        far = self.manager.far
        if far is None or not far.available or self.far_ds is None or not self.far_ds.ds:
            return
        for j in indices:
            if not 0 <= j < self.length or j in self._inflight:
                continue
            w = self.words[j]
            if w & PRESENT or w == 0 or w == LOST:
                continue
            self._inflight[j] = []
            self.manager.counters["prefetches"] += 1
            name = self.far_name(j)
            far.submit_named(
                Op.READ,
                self.far_ds.ds,
                name,
                encode_name(name),
                lambda s, b, j=j: self._prefetched(j, s, b),
            )

    def _prefetched(self, j: int, status: Any, body: Any) -> None:
        waiters = self._inflight.get(j, [])
        if status == Status.OK and not self.words[j] & PRESENT:
            value = decode_item(body)[3]
            if self._install(j, value, FAR, park=False) is not None:
                self.words[j] &= ~(0xFF << HOT_SHIFT)  # prefetched: not hot until used
        if waiters:
            self._slot_fetched(j, status, body)  # a reader joined: hand it the result
        else:
            self._inflight.pop(j, None)

    # -- offloaded operations (computed at the far node) -----------------------

    def _offload(self, opname: str, *fields: int) -> tuple[tuple[int, ...], bytes]:
        self.manager.counters["offloads"] += 1
        body = encode_compute(opname, b"", encode_compute_args(opname, *fields))
        return decode_compute_reply(opname, self._far_call(Op.COMPUTE, body))

    def _at_node(self) -> bool:
        """Whether one far node holds the whole array (ops run there), not a tier's several."""
        far = self.manager.far
        return far is not None and len(far.nodes()) == 1

    def _elements(self, start: int, count: int) -> list[bytes]:
        """Copies of elements start..start+count-1, read non-temporally in batches. May park."""
        from runtime.scope import DerefScope

        out: list[bytes] = []
        end = start + count
        for lo in range(start, end, LOCAL_OP_BATCH):
            with DerefScope() as scope:
                batch = list(range(lo, min(lo + LOCAL_OP_BATCH, end)))
                views = self.at_many(scope, batch, nt=True)
                out += [bytes(v) for v in views]
        return out

    def sum(self, start: int = 0, count: int | None = None) -> int:
        """Sum of the range as little-endian u64 lanes, mod 2**64, at the far node. May park."""
        count = self.length - start if count is None else count
        if not self._at_node():
            if self.elem_size % 8:
                raise FarMemoryError(f"sum needs 8-byte lanes, elements are {self.elem_size} bytes")
            if count > 0:
                self._check(start)
                self._check(start + count - 1)
            lanes = struct.Struct(f"<{self.elem_size // 8}Q")
            return sum(sum(lanes.unpack(e)) for e in self._elements(start, count)) % (1 << 64)
        self._flush(range(start, start + count))
        return self._offload("sum", start, count)[0][0]

    def checksum(self, start: int = 0, count: int | None = None) -> int:
        """CRC-32 of the range's elements in order, computed at the far node. May park."""
        count = self.length - start if count is None else count
        if not self._at_node():
            if count > 0:
                self._check(start)
                self._check(start + count - 1)
            crc = 0
            for e in self._elements(start, count):
                crc = zlib.crc32(e, crc)
            return crc
        self._flush(range(start, start + count))
        return self._offload("checksum", start, count)[0][0]

    def copy(self, src: int, dst: int, count: int) -> None:
        """Copy elements src..src+count-1 to dst.. at the far node (memmove). May park."""
        if count <= 0:
            return
        self._check(src + count - 1)
        self._check(dst + count - 1)
        if not self._at_node():
            for k, e in enumerate(self._elements(src, count)):  # all read first: memmove
                self.write(dst + k, e)
            return
        self._flush(range(src, src + count))
        self._flush(range(dst, dst + count))
        self._offload("copy", src, dst, count)
        for i in range(dst, dst + count):  # local copies of the destination are stale
            w = self.words[i]
            if w & PRESENT:
                self.heap.free(segment_of(w), offset_of(w))
            self.words[i] = far_word(i, 0)


class _BoxSpace(Remoteable):
    """The far home of a manager's RemBoxes: one slot per box."""

    kind = DsType.BOX

    def __init__(self, manager: Manager, capacity: int):
        super().__init__(manager, capacity, {})
        self.free_slots = list(range(capacity - 1, -1, -1))


class RemBox:
    """One remoteable object of any size (AIFM's unique pointer)."""

    __slots__ = ("space", "slot")
    _spaces: dict[int, _BoxSpace] = {}

    def __init__(self, manager: Manager, data: bytes = b"", capacity: int = 1 << 16):
        space = RemBox._spaces.get(id(manager))
        if space is None or space.manager is not manager:
            space = _BoxSpace(manager, capacity)
            RemBox._spaces[id(manager)] = space
        if not space.free_slots:
            raise MemoryError("no free RemBox slots in this manager")
        self.space = space
        self.slot = space.free_slots.pop()
        self.set(data)

    def deref(self, scope: DerefScope) -> memoryview:
        """A read-only view of the object. May park."""
        sp, slot = self.space, self.slot
        w = sp.words[slot]
        if w & PRESENT:
            return sp._view(scope, slot, w).toreadonly()
        if w == LOST:
            raise FarDataLost("box: its far copy was lost")
        data = sp._fetch(slot)
        w = sp.words[slot]
        if not w & PRESENT:
            w = sp._install(slot, data, FAR)
        return sp._view(scope, slot, w).toreadonly()

    def deref_mut(self, scope: DerefScope) -> memoryview:
        """A writable view of the object; it becomes dirty. May park."""
        sp, slot = self.space, self.slot
        w = sp.words[slot]
        if w & PRESENT and not w & EVACUATING:
            w |= DIRTY
            sp.words[slot] = w
            return sp._view(scope, slot, w)
        data = bytes(self.deref(scope))
        w = sp._install(slot, data, DIRTY | (sp.words[slot] & FAR))
        return sp._view(scope, slot, w)

    def set(self, data: bytes) -> None:
        """Replace the object's bytes (any size). May park."""
        sp, slot = self.space, self.slot
        w = sp.words[slot]
        sp._install(slot, bytes(data), DIRTY | (w & FAR))

    def get(self) -> bytes:
        """A copy of the object's bytes. May park."""
        from runtime.scope import DerefScope

        with DerefScope() as scope:
            return bytes(self.deref(scope))

    def free(self) -> None:
        """Release the box (local bytes now; the far copy is overwritten on reuse)."""
        sp, slot = self.space, self.slot
        w = sp.words[slot]
        if w & PRESENT:
            sp.heap.free(segment_of(w), offset_of(w))
        sp.words[slot] = 0
        sp.free_slots.append(slot)
