"""The remoteable hash table (DESIGN §6): what kvcache stores items in.

    index: SlotIndex key -> slot     resident items only (AIFM's design);
                                     one u32 per entry, the keys stay in the items
    words: array('Q') slot -> word   runtime.pointer metadata, one per slot, with
                                     8 bits of the key's hash as its tag
    filter: CuckooFilter             keys that may be far (~1.7 B per far key)

    item object in the heap: [size u32 | slot u32] (runtime.heap's header), then
        <I flags><I exptime><Q cas><I atime><B nkey><B state> key value   (22 B + key + value)

  Local bytes per resident item beyond key and value: 8 (word) + 5.3-10.7
  (index entries at a load of 3/8-3/4) + 8 (heap object header) + 22 (item
  header) + 0-7 (8-alignment): 43-56, ~50 on average; no Python object per
  item (loadtest/bench_memcached.py measures it). Free slots are chained
  through their words (a free word holds the next free slot + 1).

- Cold items leave local memory entirely, key and value; a miss on a key
  that was never stored is answered by the filter, with no round trip.
- A get of a far item fetches it and re-admits it clean (the far copy stays:
  evicting it again costs nothing), except values of `nt_threshold` bytes
  or more, served without being kept (non-temporal).
- Invariant: a resident item has FAR set iff the far node holds an identical
  copy and the filter holds its key. Changing an item with FAR set first
  removes the far copy (asynchronously, ordered before any later request for
  that key on the one far connection) and its filter entry; so a dirty item
  never has a far copy, and dropping it can't leave a stale one readable.
- The filter only loses a key's entry when the key surely had one: a
  REMOVE the node answered OK (or that failed: then no stale copy may ever
  be read), or the node's `gone` log (every second) naming keys it evicted
  or expired. A false positive (~0.24%) never costs another key its entry.
- A far copy that may be stale but could not be removed (the node was
  down or stalled, a REMOVE got no answer, a write-back was overtaken by a
  mutator or got no answer) loses its filter entry at once and its key is
  remembered (up to UNSURE_MAX keys); when the node answers again those
  keys are REMOVEd before anything else is sent, and a flush_all the node
  missed is sent then. So no stale copy outlives an outage, even one a
  filter false positive could reach.
- The table is a cache (may_forget): with no far node, cold items are
  evicted as memcached evicts them. A far node that restarted lost every far
  item: the filter is cleared and resident items become the only copies.
- Expiry: `exptime` is absolute unix seconds (0 = never); an expired item is
  a miss and is reclaimed with no I/O. The far node expires its copies too.
- Several far nodes (runtime/fartier.py): requests name their key
  (`submit_named`) and the tier sends them to the key's replicas; "the far
  node" above means every replica. With replicas nothing is offloaded
  (`can_offload`); a node's `gone` report counts only for keys it is the
  primary of, and removes the other copies; a node that rejoins cleared makes
  resident items that had a copy there dirty (`on_far_node_cleared`).

Compiled (kvcache/compiled.py, hashtable.pxd): the index probe (`_find`: a
hash, the home entry, the word's tag, one memcmp), the header reads and the
resident fast paths (`lookup_many`, `find_live`, `copy_value`, `_store`'s
bump allocation) work on C pointers into the word array and the segments.
"""

from __future__ import annotations

import logging
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cython

from protocol.far import (
    GONE_BATCH,
    DsType,
    FrameError,
    Op,
    Status,
    decode_compute_reply,
    decode_item,
    decode_names,
    decode_write,
    encode_compute,
    encode_compute_args,
    encode_name,
    encode_write,
)
from runtime import hub as _hub
from runtime.cuckoo import CuckooFilter
from runtime.errors import FarMemoryError, FarUnavailable
from runtime.farclient import FarClient, FarReply
from runtime.heap import Heap, Segment
from runtime.hugepages import advise_array
from runtime.pointer import (
    DIRTY,
    FAR,
    HOT_DEREF,
    HOT_MAX,
    HOT_SHIFT,
    OFF_MASK,
    PRESENT,
    SEG_MAX,
    SEG_SHIFT,
    TAG_SHIFT,
    local_word,
    offset_of,
    segment_of,
)
from runtime.slotindex import Key, SlotIndex, home_of
from runtime.structures import Countdown, Remoteable

if cython.compiled:
    from cython.cimports.cpython.bytearray import PyByteArray_AS_STRING, PyByteArray_Resize
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcmp, memcpy
    from cython.cimports.libc.time import time as c_time

if TYPE_CHECKING:
    from runtime.manager import Manager
    from runtime.scope import DerefScope

__all__ = ["FETCHED", "ITEM_HEADER", "STALE", "TOKEN_SENT", "WARM_KEYS", "Item", "RemHashTable"]

ITEM_HEADER = struct.Struct("<IIQIBB")  # flags, exptime, cas, atime, key length, state
_HDR = cython.declare(cython.Py_ssize_t, 22)  # ITEM_HEADER.size
_WORDS_HUGE = cython.declare(cython.Py_ssize_t, (2 << 20) // 8)  # words in 2 MiB
# the far codes the read path compares with, as C ints (an enum member is a lookup)
_OP_READ = cython.declare(cython.int, int(Op.READ))
_ST_OK = cython.declare(cython.int, int(Status.OK))
_ST_NOT_FOUND = cython.declare(cython.int, int(Status.NOT_FOUND))
_EXPTIME = struct.Struct("<I")  # at offset 4
_CAS = struct.Struct("<Q")  # at offset 8
_ATIME = struct.Struct("<I")  # at offset 16
_NKEY_AT = cython.declare(cython.Py_ssize_t, 20)  # offset of the key length byte
_STATE_AT = cython.declare(cython.Py_ssize_t, 21)  # offset of the state byte
FETCHED = 1  # state: read since stored (mg h)
STALE = 2  # state: invalidated by md I / ms I (mg X)
TOKEN_SENT = 4  # state: a client won the recache token (mg W then Z)
GONE_PERIOD = 1.0  # seconds between polls of the far node's `gone` log
UNSURE_MAX = 1 << 16  # keys with maybe-stale far copies remembered while the node is away
KEY_MAX = 255  # the key length byte (memcached keys are at most 250)

log = logging.getLogger("runtime.hashtable")
# C constants when compiled (module globals would be looked up by name each time)
_HOT_MASK = cython.declare(cython.ulonglong, HOT_MAX << HOT_SHIFT)
_HOT_SET = cython.declare(cython.ulonglong, HOT_DEREF << HOT_SHIFT)
_NOT_HOT = cython.declare(cython.ulonglong, ~(HOT_MAX << HOT_SHIFT) & ((1 << 64) - 1))
_FREE_MASK = cython.declare(cython.ulonglong, (1 << 44) - 1)  # a free word: next free slot + 1
_PRESENT = cython.declare(cython.ulonglong, PRESENT)
_FAR = cython.declare(cython.ulonglong, FAR)
_SEG_SHIFT = cython.declare(cython.int, SEG_SHIFT)
_SEG_MAX = cython.declare(cython.ulonglong, SEG_MAX)
_OFF_MASK = cython.declare(cython.ulonglong, OFF_MASK)
_TAG_SHIFT = cython.declare(cython.int, TAG_SHIFT)
_FETCHED = cython.declare(cython.uchar, 1)  # FETCHED
_U64 = (1 << 64) - 1
WARM_KEYS = 16  # keys per warm_keys pass (the size of its C arrays): misses in flight
_WARM = cython.declare(cython.Py_ssize_t, WARM_KEYS)
_SYSTEM_CLOCK = cython.declare(object, time.time)  # a C global: `is` with no lookup


def tag_of(h: cython.longlong) -> cython.ulonglong:
    """The 8 bits of a key's hash kept in its word (the top byte of the 64-bit hash)."""
    if cython.compiled:
        return (cython.cast(cython.ulonglong, h) >> 56) & 0xFF
    return ((h & _U64) >> 56) & 0xFF


class Item:
    """A found item: its fields and a view of its value (valid in the scope)."""

    def __init__(
        self,
        key: Key,
        flags: int,
        exptime: int,
        cas: int,
        value: memoryview,
        atime: int = 0,
        state: int = 0,
        slot: int = -1,
        seg: Any = None,
        off: int = 0,
    ):
        self.key = key
        self.flags = flags  # uint32 client flags
        self.exptime = exptime  # absolute unix seconds, 0 = never
        self.cas = cas  # uint64
        self.value = value  # read-only view of the value bytes
        self.atime = atime  # unix seconds of the last access before this one
        self.state = state  # FETCHED | STALE | TOKEN_SENT as of the lookup
        self.slot = slot  # -1: not resident (a non-temporal far read)
        self.seg = seg  # the heap segment holding it (resident items)
        self.off = off  # its payload offset there

    def __repr__(self) -> str:
        return f"Item({self.key!r}, flags={self.flags}, exptime={self.exptime}, cas={self.cas})"


class _Fetch(FarReply):
    """One far read of a key, shared by every request asking for it; its reply callback.

    The request that sent it may wait on it directly (`on_done`, `arg`: a
    one-key fetch_many needs no _Batch); requests that join it later wait
    as `waiters`. Callbacks here are objects, not closures: a closure kept
    in the scope it closes over is a reference cycle, garbage only the
    cyclic GC can free, and a far read per request made the GC a tenth of
    the far path's CPU. Compiled, the far client calls `done` in C (a FarReply).
    """

    def __init__(self, table: RemHashTable, key: Key) -> None:
        self.table = table
        self.key = key
        self.waiters: list[Any] | None = None  # _Landings joined later, in order; or None
        self.stale = False  # the key was changed meanwhile: drop the result
        self.on_done: Callable | None = None  # on_done(arg, results, error) of its sender
        self.arg: Any = None
        self.sending = False  # still inside fetch_many: report from the hub's next turn

    def join(self, waiter: _Landing) -> None:
        """`waiter.landed(key, result, error)` when the read lands."""
        if self.waiters is None:
            self.waiters = [waiter]
        else:
            self.waiters.append(waiter)

    def done(self, status: Any, body: Any) -> None:
        """The far node's reply (the FarClient's callback, hub)."""
        self.table._fetched(self.key, self, status, body)


def _new_fetch(table: RemHashTable, key: Key) -> _Fetch:
    """_Fetch(table, key); compiled, made by tp_new with no __init__ call (its other
    fields start as __init__ sets them: None and False)."""
    if cython.compiled:
        fetch: _Fetch = _Fetch.__new__(_Fetch)
        fetch.table = table
        fetch.key = key
        return fetch
    return _Fetch(table, key)


class _Landing:
    """What waits on a _Fetch: `landed(key, result, error)` (a C call when compiled)."""

    def landed(self, key: Any, result: Any, exc: Any) -> None:
        """One read's outcome (hub)."""
        raise NotImplementedError


class _Batch(_Landing):
    """The far reads of one fetch_many: on_done(arg, results, error) once all landed."""

    def __init__(self, left: int, on_done: Callable, arg: Any, hub: Any) -> None:
        self.results: dict = {}  # key -> item tuple or None (changed keys left out)
        self.left = left  # reads not landed yet
        self.error: BaseException | None = None  # the first failure
        self.on_done = on_done
        self.arg = arg
        self.sending = True  # still inside fetch_many: report from the hub's next turn
        self.hub = hub

    def landed(self, key: Any, result: Any, exc: Any) -> None:
        """One read's outcome (hub)."""
        if exc is not None:
            if self.error is None:
                self.error = exc
        elif result is not _STALE:
            self.results[key] = result
        self.left -= 1
        if self.left == 0:
            if self.sending:
                self.hub.schedule(self.on_done, self.arg, self.results, self.error)
            else:
                self.on_done(self.arg, self.results, self.error)


class _Prefetched(_Landing):
    """The waiter of a prefetch: admit what lands (RemHashTable._prefetched)."""

    def __init__(self, table: RemHashTable) -> None:
        self.table = table

    def landed(self, key: Any, result: Any, exc: Any) -> None:
        """A prefetched item landed (hub)."""
        self.table._prefetched(key, result, exc)


class _Recopy(_Landing, Countdown):
    """The far reads of one rereplicate(): each landed item is written to its replicas."""

    def __init__(self, table: RemHashTable, left: int, done: Callable, skip: int) -> None:
        Countdown.__init__(self, left, done)  # done({key: seen to}) once all are
        self.table = table
        self.skip = skip  # the node the copies are not written to (it holds them)

    def landed(self, key: Any, result: Any, exc: Any) -> None:
        """A read landed (hub): write what it brought to the key's replica set."""
        self.table._recopy(self, key, result, exc)


class _Index(SlotIndex):
    """A table's index: the home of a slot's key is hashed in the heap (no call through
    Python, no bytes object), so a removal's backward shift and a resize cost little."""

    def __init__(self, table: RemHashTable):
        super().__init__(table._key_at, table._hash_at)
        self.table = table

    def hash_of(self, slot: cython.Py_ssize_t) -> cython.longlong:
        """hash() of the key in `slot`."""
        return self.table._hash_slot(slot)


class RemHashTable(Remoteable):
    """A hash table of memcached-style items whose cold items live far."""

    kind = DsType.HASHTABLE
    may_forget = True

    def __init__(
        self,
        manager: Manager,
        *,
        expected_far_items: int = 1 << 20,
        nt_threshold: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.index = _Index(self)  # resident key -> slot
        self._free_head = 0  # first free slot + 1 (0: none); the rest chain through words
        self.free_count = 0  # slots on that chain
        self.resident_far = 0  # resident items with FAR set (also counted in the filter)
        self.filter = CuckooFilter(expected_far_items)
        self.nt_threshold = nt_threshold  # values this big are served, not kept
        self.clock = clock  # unix seconds
        self._fetches: dict[Key, _Fetch] = {}
        self.stats = {
            "far_hits": 0,  # gets answered by the far node
            "far_misses": 0,  # the filter said maybe, the node said no
            "filter_negatives": 0,  # misses answered locally by the filter
            "nt_reads": 0,
            "far_removes": 0,
            "evictions": 0,  # forgotten for lack of room (no far node)
            "reclaimed": 0,  # expired items reclaimed
            "far_gone": 0,  # keys the far node reported evicted or expired
            "far_gone_lost": 0,  # such reports its bounded log dropped (stale filter entries)
            "far_lost": 0,  # far-only items lost with a far node that restarted
            "far_unsure": 0,  # maybe-stale far copies queued for removal
            "far_unsure_dropped": 0,  # such copies past UNSURE_MAX (left to the filter)
        }
        self._generation = 0  # bumped by clear/reset: older far replies are ignored
        self._unsure: set[Key] = set()  # keys to REMOVE far when the node answers again
        self._clear_pending = False  # a flush_all the far node has not heard of
        super().__init__(manager, 0, {"evict": True})
        if manager.far is not None:
            for i in range(len(manager.far.nodes())):
                manager.hub.loop.call_later(GONE_PERIOD, self._poll_gone, i)

    # -- segments and item headers (C pointers when compiled) -----------------------

    def _seg(self, w: cython.ulonglong) -> Segment:
        """The segment a present word points into."""
        return self.heap.table[(w >> _SEG_SHIFT) & _SEG_MAX]

    # -- naming and slots ------------------------------------------------------

    def _key_at(self, slot: int) -> bytes:
        """The key of the resident item in `slot`, read from the item itself."""
        w = self._w(slot)
        seg = self._seg(w)
        off = w & _OFF_MASK
        nkey = seg.buf[off + _NKEY_AT]
        return bytes(seg.buf[off + _HDR : off + _HDR + nkey])

    def _hash_at(self, slot: int) -> int:
        """hash() of the resident item's key in `slot` (its home in the index)."""
        return hash(self._key_at(slot))

    def _hash_slot(self, slot: cython.Py_ssize_t) -> cython.longlong:
        """_hash_at without a bytes object when compiled: the key hashed where it lies
        (CPython's bytes hash, so the same home as hash(key))."""
        if cython.compiled:
            w: cython.ulonglong = self.words.data.as_ulonglongs[slot]
            seg: Segment = self.heap.table[(w >> _SEG_SHIFT) & _SEG_MAX]
            p = seg.data + (w & _OFF_MASK)
            return _Py_HashBytes(p + _HDR, p[_NKEY_AT])  # noqa: F821 (hashtable.pxd)
        return hash(self._key_at(slot))

    def far_name(self, slot: int) -> bytes:
        """The far name of a slot's item: its key."""
        return self._key_at(slot)

    def _new_slot(self) -> cython.Py_ssize_t:
        head: cython.Py_ssize_t = self._free_head
        if head:
            slot: cython.Py_ssize_t = head - 1
            self._free_head = self._w(slot) & _FREE_MASK
            self.free_count -= 1
            self._set_w(slot, 0)
            return slot
        self.words.append(0)
        n: cython.Py_ssize_t = len(self.words)
        if n & (n - 1) == 0 and n >= _WORDS_HUGE:  # from 2 MiB, at each doubling
            advise_array(self.words)  # glibc grows it by mremap: the advice carries on
        return n - 1

    def _free_slot(self, slot: cython.Py_ssize_t) -> cython.void:
        """Put a slot whose item is gone on the free chain."""
        self._set_w(slot, self._free_head)
        self._free_head = slot + 1
        self.free_count += 1

    def _drop_slot(self, slot: cython.Py_ssize_t) -> cython.void:
        """Unindex a slot and free it (its item's bytes are still readable here)."""
        if self._w(slot) & _FAR:
            self.resident_far -= 1
        self.index.remove_slot(slot, self._hash_slot(slot))
        self._free_slot(slot)

    def index_bytes(self) -> int:
        """Local bytes of the index, by sys.getsizeof: its entries and the words."""
        size = sys.getsizeof
        return size(self.index.entries) + size(self.words)

    def __len__(self) -> int:
        return len(self.index)

    def far_only(self) -> int:
        """Items whose only copy is far (an estimate: the filter may hold stale keys)."""
        return max(len(self.filter) - self.resident_far, 0)

    # -- the resident fast path ----------------------------------------------------

    def _find(self, key: object, h: cython.longlong) -> cython.Py_ssize_t:
        """The slot of resident `key` (hash `h`), or -1: probe, tag, then the key itself."""
        if not isinstance(key, bytes):
            key = bytes(key)
        index: SlotIndex = self.index
        mask: cython.Py_ssize_t = index.mask
        tag: cython.ulonglong = tag_of(h)
        i: cython.Py_ssize_t = home_of(h, mask)
        nkey: cython.Py_ssize_t = len(key)
        e: cython.Py_ssize_t
        w: cython.ulonglong
        seg: Segment
        off: cython.Py_ssize_t
        if cython.compiled:
            entries = cython.cast(cython.p_uint, index.entries.data.as_uints)
            words = self.words.data.as_ulonglongs
            kp = PyBytes_AS_STRING(key)
            while True:
                e = entries[i]
                if not e:
                    return -1
                w = words[e - 1]
                if (w >> _TAG_SHIFT) & 0xFF == tag:
                    seg = self.heap.table[(w >> _SEG_SHIFT) & _SEG_MAX]
                    off = w & _OFF_MASK
                    if (
                        seg.data[off + _NKEY_AT] == nkey
                        and memcmp(seg.data + off + _HDR, kp, nkey) == 0
                    ):
                        return e - 1
                i = (i + 1) & mask
        entries_py = index.entries
        words_py = self.words
        table = self.heap.table
        while True:
            e = entries_py[i]
            if not e:
                return -1
            w = words_py[e - 1]
            if (w >> _TAG_SHIFT) & 0xFF == tag:
                seg = table[(w >> _SEG_SHIFT) & _SEG_MAX]
                off = w & _OFF_MASK
                buf = seg.buf
                if buf[off + _NKEY_AT] == nkey and buf[off + _HDR : off + _HDR + nkey] == key:
                    return e - 1
            i = (i + 1) & mask

    def slot_of(self, key: Key) -> int:
        """The slot of resident `key`, or -1 (whether or not it has expired)."""
        return self._find(key, hash(key))

    def resident(self, key: Key) -> bool:
        """True if `key` has an item in local memory (perhaps expired)."""
        return self._find(key, hash(key)) >= 0

    def keys(self) -> list[Key]:
        """The keys of the resident items (a snapshot)."""
        return [self._key_at(slot) for slot in self.index.slots()]

    def find_live(self, key: object, now: cython.uint) -> cython.Py_ssize_t:
        """The slot of a live resident item, marked fetched and hot; -1 if none.

        The hot path of a get: one hash, a probe, one word test; its only
        side effects (hotness, FETCHED, access time) are idempotent; never
        parks. An expired item is left for get_many to reclaim.
        """
        slot: cython.Py_ssize_t = self._find(key, hash(key))
        if slot < 0:
            return -1
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        off: cython.Py_ssize_t = w & _OFF_MASK
        exptime: cython.uint
        if cython.compiled:
            p = seg.data + off
            exptime = cython.cast(cython.p_uint, p)[1]
            if exptime and exptime <= now:
                return -1
            if w & _HOT_MASK < _HOT_SET:
                self.words.data.as_ulonglongs[slot] = (w & _NOT_HOT) | _HOT_SET
            cython.cast(cython.p_uint, p)[4] = now
            p[_STATE_AT] |= _FETCHED
            return slot
        buf = seg.buf
        exptime = _EXPTIME.unpack_from(buf, off + 4)[0]
        if exptime and exptime <= now:
            return -1
        if w & _HOT_MASK < _HOT_SET:
            self.words[slot] = (w & _NOT_HOT) | _HOT_SET
        _ATIME.pack_into(buf, off + 16, now)
        buf[off + _STATE_AT] |= _FETCHED
        return slot

    def item_fields(
        self,
        slot: cython.Py_ssize_t,
        flags: cython.p_uint,
        cas: cython.p_ulonglong,
        nvalue: cython.p_long,
    ) -> cython.p_char:
        """Compiled callers: the flags, cas and value length of `slot`'s item; its value."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self.heap.table[(w >> _SEG_SHIFT) & _SEG_MAX]
        off: cython.Py_ssize_t = w & _OFF_MASK
        p = seg.data + off
        flags[0] = cython.cast(cython.p_uint, p)[0]
        cas[0] = cython.cast(cython.p_ulonglong, p + 8)[0]
        start: cython.Py_ssize_t = _HDR + p[_NKEY_AT]
        nvalue[0] = cython.cast(cython.p_uint, p - 8)[0] - start  # the heap header's size
        return cython.cast(cython.p_char, p + start)

    def flags_of(self, slot: cython.Py_ssize_t) -> cython.uint:
        """The client flags of the resident item in `slot`."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        if cython.compiled:
            return cython.cast(cython.p_uint, seg.data + (w & _OFF_MASK))[0]
        return struct.unpack_from("<I", seg.buf, w & _OFF_MASK)[0]

    def cas_of(self, slot: cython.Py_ssize_t) -> cython.ulonglong:
        """The cas unique of the resident item in `slot`."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        if cython.compiled:
            return cython.cast(cython.p_ulonglong, seg.data + (w & _OFF_MASK) + 8)[0]
        return _CAS.unpack_from(seg.buf, (w & _OFF_MASK) + 8)[0]

    def value_len(self, slot: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """The length of the value of the resident item in `slot`."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        off: cython.Py_ssize_t = w & _OFF_MASK
        return seg.size_at(off) - _HDR - seg.buf[off + _NKEY_AT]

    def copy_value(self, slot: cython.Py_ssize_t, out: bytearray) -> cython.void:
        """Append the value of the resident item in `slot` to `out`. Never parks."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        off: cython.Py_ssize_t = w & _OFF_MASK
        start: cython.Py_ssize_t = off + _HDR + seg.buf[off + _NKEY_AT]
        end: cython.Py_ssize_t = off + seg.size_at(off)
        if cython.compiled:
            n: cython.Py_ssize_t = len(out)
            PyByteArray_Resize(out, n + end - start)
            memcpy(PyByteArray_AS_STRING(out) + n, seg.data + start, end - start)
        else:
            out += seg.view[start:end]

    def copy_value_to(self, slot: cython.Py_ssize_t, p: cython.p_char) -> cython.p_char:
        """Compiled callers: copy the value of `slot`'s item to p; the end of the copy."""
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        off: cython.Py_ssize_t = w & _OFF_MASK
        data = seg.data + off
        start: cython.Py_ssize_t = _HDR + data[_NKEY_AT]
        n: cython.Py_ssize_t = seg.size_at(off) - start
        memcpy(p, data + start, n)
        return p + n

    def lookup_many(self, scope: DerefScope, keys: list[Key], now: int) -> list[tuple | None]:
        """Per key, (flags, cas, value view) of a live resident item, marked fetched; else None.

        None means "not here or expired": the caller falls back to get_many,
        which reclaims expired items and goes far. Never parks; its only side
        effects (hotness, FETCHED, access time) are idempotent. Each value's
        segment is pinned in `scope`.
        """
        out: list[tuple | None] = []
        slot: cython.Py_ssize_t
        w: cython.ulonglong
        seg: Segment
        off: cython.Py_ssize_t
        pins: list = scope._pins
        for key in keys:
            slot = self.find_live(key, now)
            if slot < 0:
                out.append(None)
                continue
            w = self._w(slot)
            seg = self._seg(w)
            off = w & _OFF_MASK
            seg.pins += 1
            pins.append(seg)
            start = off + _HDR + seg.buf[off + _NKEY_AT]
            out.append(
                (self.flags_of(slot), self.cas_of(slot), seg.rview[start : off + seg.size_at(off)])
            )
        return out

    def warm_keys(self, keys: list, start: cython.Py_ssize_t, stop: cython.Py_ssize_t) -> None:
        """Prefetch the cache lines that probing keys[start:stop] will read; no effect on state.

        A probe of a large index is three dependent cache misses (the entry,
        the slot's word, the item), and a multi-key lookup did them one key
        after another: at 2^20 items the 32 lookups of a web-frontend request
        stalled ~9 us on them. Three passes over the keys issue each level's
        loads for all of them before the next level needs any, so the misses
        overlap (group prefetching). Only the home entry is warmed; a longer
        probe run reads on from it. Pure Python: nothing to do.
        """
        if cython.compiled:
            index: SlotIndex = self.index
            mask: cython.Py_ssize_t = index.mask
            entries = cython.cast(cython.p_uint, index.entries.data.as_uints)
            words = self.words.data.as_ulonglongs
            nslots: cython.Py_ssize_t = len(self.words)
            table: list = self.heap.table
            homes = cython.declare(cython.Py_ssize_t[16])
            tags = cython.declare(cython.ulonglong[16])
            e: cython.uint
            w: cython.ulonglong
            h: cython.longlong
            k: cython.Py_ssize_t
            seg: Segment
            stop = min(stop, len(keys))
            n: cython.Py_ssize_t = min(stop - start, _WARM)
            if n <= 0:
                return
            for k in range(n):
                key = keys[start + k]
                if type(key) is not bytes:  # noqa: E721 (exact bytes: a hash read without a call)
                    homes[k] = -1
                    continue
                h = hash(key)
                homes[k] = home_of(h, mask)
                tags[k] = tag_of(h)
                __builtin_prefetch(entries + homes[k])  # noqa: F821 (hashtable.pxd)
            for k in range(n):
                if homes[k] >= 0:
                    e = entries[homes[k]]
                    homes[k] = e - 1 if e and e <= nslots else -1
                    if homes[k] >= 0:
                        __builtin_prefetch(words + homes[k])  # noqa: F821
            for k in range(n):
                if homes[k] >= 0:
                    w = words[homes[k]]
                    if (w >> _TAG_SHIFT) & 0xFF == tags[k] and w & _PRESENT:
                        seg = table[(w >> _SEG_SHIFT) & _SEG_MAX]
                        p = seg.data + (w & _OFF_MASK)
                        __builtin_prefetch(p)  # noqa: F821 (the header: length, exptime)
                        # 16 bytes into the key: the line holding a small item's key end
                        # and value when the item straddles two lines
                        __builtin_prefetch(p + _HDR + 16)  # noqa: F821

    def values_of(self, keys: list, now: cython.uint) -> list:
        """Per key, a copy (bytes) of a live resident item's value, marked fetched; else None.

        lookup_many without the views: nothing is pinned and no tuple is built,
        so for small values (a copy costs less than a view) it is the cheaper
        read. None means "not here or expired", as for lookup_many. Never parks.
        """
        out: list = []
        slot: cython.Py_ssize_t
        n: cython.Py_ssize_t = len(keys)
        i: cython.Py_ssize_t
        for i in range(n):
            if cython.compiled and i % _WARM == 0 and n > 1:
                self.warm_keys(keys, i, i + _WARM)
            slot = self.find_live(keys[i], now)
            if slot < 0:
                out.append(None)
            elif cython.compiled:
                flags = cython.declare(cython.uint, 0)
                cas = cython.declare(cython.ulonglong, 0)
                nvalue = cython.declare(cython.long, 0)
                p = self.item_fields(
                    slot, cython.address(flags), cython.address(cas), cython.address(nvalue)
                )
                out.append(PyBytes_FromStringAndSize(p, nvalue))
            else:
                value = bytearray()
                self.copy_value(slot, value)
                out.append(bytes(value))
        return out

    def _item(self, scope: DerefScope, slot: int, key: Key) -> Item:
        w = self._w(slot)
        if w & _HOT_MASK < _HOT_SET:
            self._set_w(slot, (w & _NOT_HOT) | _HOT_SET)
        seg = self._seg(w)
        seg.pins += 1
        scope._pins.append(seg)
        off = w & _OFF_MASK
        flags, exptime, cas, atime, nkey, state = ITEM_HEADER.unpack_from(seg.buf, off)
        value = seg.rview[off + _HDR + nkey : off + seg.size_at(off)]
        return Item(key, flags, exptime, cas, value, atime, state, slot, seg, off)

    def _now(self) -> cython.uint:
        """The clock's unix seconds, from the C library when it is the system's."""
        if cython.compiled and self.clock is _SYSTEM_CLOCK:
            return c_time(cython.NULL)
        return int(self.clock())

    def _expired(self, exptime: int) -> bool:
        return exptime != 0 and exptime <= self.clock()

    def peek(self, scope: DerefScope, key: Key) -> Item | None:
        """The resident item under `key`, or None; never parks, never goes far."""
        slot = self._find(key, hash(key))
        if slot < 0:
            return None
        item = self._item(scope, slot, key)
        if item.exptime and self._expired(item.exptime):
            self._remove_local(slot)
            self.stats["reclaimed"] += 1
            return None
        return item

    def may_be_far(self, key: Key) -> bool:
        """True if a far copy of `key` may exist (the filter's answer)."""
        return key in self.filter

    def get(self, scope: DerefScope, key: Key) -> Item | None:
        """The item under `key`, fetched from far if need be; None on a miss. May park.

        From the hub, a get that must go far raises WouldPark first.
        """
        item = self.peek(scope, key)
        if item is not None:
            return item
        if key not in self.filter:
            self.stats["filter_negatives"] += 1
            return None
        return self.get_many(scope, [key])[0]

    def get_many(self, scope: DerefScope, keys: list[Key]) -> list[Item | None]:
        """Items for `keys` in order; every far fetch is sent before one park. May park."""
        out: list[Item | None] = []
        far_keys = []
        for key in keys:
            item = self.peek(scope, key)
            out.append(item)
            if item is None:
                if key in self.filter:
                    far_keys.append(key)
                else:
                    self.stats["filter_negatives"] += 1
        if not far_keys:
            return out
        fetched = self._fetch_keys(far_keys)
        for n, key in enumerate(keys):
            if out[n] is not None:
                continue
            if key in fetched:
                out[n] = self._admit(scope, key, fetched[key])
            else:
                out[n] = self.peek(scope, key)  # set meanwhile by another green thread
        return out

    def _fetch_keys(self, keys: list[Key]) -> dict[Key, tuple | None]:
        """Far items (flags, exptime, cas, value) or None per key; one park. May park."""
        _hub.check_can_park()
        self._far_ds()  # constructed on the node (may park)
        waiter = _hub.Waiter(self.manager.hub)
        if not self.fetch_many(keys, _switch_waiter, waiter):
            raise FarUnavailable("far structure not constructed")
        results, exc = waiter.get()
        if exc is not None:
            raise exc
        return results

    def fetch_many(self, keys: list[Key], on_done: Callable, arg: Any = None) -> bool:
        """Send the far reads of `keys`; on_done(arg, results, error) runs in the hub when done.

        results maps a key to its far item (flags, exptime, cas, value), or
        None if the node has none; keys changed meanwhile are left out (read
        them locally). Reads already in flight are joined, not repeated.
        Never parks: False, and nothing sent, if the structure is not yet
        constructed on the node; FarUnavailable at once if the node is down.
        on_done never runs before fetch_many returns (reads that fail at once
        are reported from the hub's next turn).
        """
        manager = self.manager
        far: FarClient = manager.far
        if far is None or not far.available:
            raise FarUnavailable("far node unavailable")
        st = self.far_ds
        ds = 0 if st is None else st.ds
        if not ds:
            return False
        fetches = self._fetches
        counters = manager.counters
        fetch: _Fetch
        if len(keys) == 1 and keys[0] not in fetches:  # one new read: it is its own batch
            key = keys[0]
            fetch = fetches[key] = _new_fetch(self, key)
            fetch.on_done = on_done
            fetch.arg = arg
            fetch.sending = True
            counters["far_reads"] += 1
            far.submit_named(_OP_READ, ds, key, encode_name(key), fetch)
            fetch.sending = False
            return True
        unique = list(dict.fromkeys(keys)) if len(keys) > 1 else keys
        batch = _Batch(len(unique), on_done, arg, self.manager.hub)
        for key in unique:
            fetch = fetches.get(key)
            if fetch is None:
                fetch = fetches[key] = _new_fetch(self, key)
                fetch.join(batch)
                counters["far_reads"] += 1
                far.submit_named(_OP_READ, ds, key, encode_name(key), fetch)
            else:
                fetch.join(batch)
        batch.sending = False
        return True

    def admit_landed(self, fetched: dict) -> None:
        """Admit the items of landed far reads while room is free at once. Never parks.

        Each item admitted (and counted a far hit) leaves `fetched`: what is
        left is a miss, an expired or non-temporal item, or one there was no
        room for, for landed_many to serve.
        """
        now: cython.uint = self._now()
        if len(fetched) == 1:  # a one-key get: no list of the keys
            key, found = fetched.popitem()
            admitted: cython.bint = False
            try:
                admitted = self._admit_landed_one(key, found, now)
            finally:
                if not admitted:  # left for landed_many (also if the admission raised)
                    fetched[key] = found
            return
        for key in list(fetched):
            if self._admit_landed_one(key, fetched[key], now):
                del fetched[key]

    def _admit_landed_one(self, key: Key, found: object, now: cython.uint) -> cython.bint:
        """admit_landed's step: True if `key` is resident now (admitted, or meanwhile)."""
        if found is None:
            return False
        if self._find(key, hash(key)) >= 0:  # admitted meanwhile by another request
            return True
        flags, exptime, cas, value = found
        nt = self.nt_threshold
        if (exptime != 0 and exptime <= now) or (nt is not None and len(value) >= nt):
            return False
        if self._store(key, value, flags, exptime, cas, _FAR, False, True) >= 0:
            self.stats["far_hits"] += 1
            return True
        return False

    def landed_many(self, scope: DerefScope, keys: list[Key], fetched: dict) -> list[Item | None]:
        """Items for `keys` once their far reads landed in `fetched`; never parks, never goes far.

        Resident items are read here; a fetched one is admitted (or served
        non-temporally, no room being free at once); the rest are misses.
        """
        out: list[Item | None] = []
        for key in keys:
            item = self.peek(scope, key)
            if item is None:
                if key in fetched:
                    item = self._admit(scope, key, fetched[key])
                elif key not in self.filter:
                    self.stats["filter_negatives"] += 1
            out.append(item)
        return out

    def _fetched(self, key: Key, fetch: _Fetch, status: object, body: object) -> None:
        if self._fetches.get(key) is fetch:  # an offload may have detached it
            del self._fetches[key]
        result: Any = None
        exc: BaseException | None = None
        if fetch.stale:
            result = _STALE
        elif status is None:
            exc = body
        elif status == _ST_OK:
            result = decode_item(body)
            self.manager.counters["far_read_bytes"] += len(result[3])
        elif status == _ST_NOT_FOUND:
            # evicted or expired there (its `gone` notice will clear the entry),
            # or a false positive of the filter: discarding here could take
            # another key's entry, so this read just misses
            self.stats["far_misses"] += 1
        else:
            exc = FarMemoryError(f"far read failed: {Status(status).name}")
        on_done = fetch.on_done
        if on_done is not None:  # the one-key fetch_many that sent it
            results = {} if exc is not None or result is _STALE else {key: result}
            if fetch.sending:
                self.manager.hub.schedule(on_done, fetch.arg, results, exc)
            else:
                on_done(fetch.arg, results, exc)
        waiters = fetch.waiters
        if waiters is not None:
            waiter: _Landing
            for waiter in waiters:
                waiter.landed(key, result, exc)

    def prefetch(self, keys: list[Key]) -> int:
        """Start far reads of `keys` that may be far; they land resident. Never parks.

        The request stream is the prefetch hint (DESIGN §2): a connection's
        pipelined gets are all sent before the first one parks, so N far gets
        cost about one round trip. Keys resident, filtered out, or already in
        flight are skipped; a landing item is admitted only if room is free
        at once (else dropped: the get that wanted it fetches it again).
        Returns the number of reads started.
        """
        far = self.manager.far
        st = self.far_ds
        if far is None or not far.available or st is None or not st.ds:
            return 0
        started = 0
        fetches = self._fetches
        for key in keys:
            if key in fetches or self.resident(key) or key not in self.filter:
                continue
            fetch = fetches[key] = _new_fetch(self, key)
            fetch.join(_Prefetched(self))
            started += 1
            far.submit_named(Op.READ, st.ds, key, encode_name(key), fetch)
        self.manager.counters["far_reads"] += started
        self.manager.counters["prefetches"] += started
        return started

    def _prefetched(self, key: Key, result: Any, exc: BaseException | None) -> None:
        """A prefetched item landed (hub): admit it clean if room is free now."""
        if exc is not None or result is None or result is _STALE or self.resident(key):
            return
        flags, exptime, cas, value = result
        if self._expired(exptime):
            return
        if self.nt_threshold is not None and len(value) >= self.nt_threshold:
            return  # non-temporal: the get that wants it reads it through
        if self._store(key, value, flags, exptime, cas, FAR, nowait=True) >= 0:
            self.manager.counters["prefetch_hits"] += 1

    def _admit(self, scope: DerefScope, key: Key, found: tuple | None) -> Item | None:
        """Serve a fetched far item, re-admitting it locally as clean. Never parks.

        Admission takes only room that is free at once: with none (the
        evacuator behind, or the caller's own scope pinning the heap, as a
        big multi-get does) the item is served as a non-temporal copy
        instead. A read never waits for memory, so it can never wait on pins
        its own request holds.
        """
        if found is None:
            return None
        flags, exptime, cas, value = found
        if self._expired(exptime):
            return None
        self.stats["far_hits"] += 1
        if self.nt_threshold is not None and len(value) >= self.nt_threshold:
            self.stats["nt_reads"] += 1
            self.manager.counters["nt_reads"] += 1
            return Item(key, flags, exptime, cas, memoryview(value).toreadonly())
        if self.resident(key):  # admitted meanwhile by another green thread
            return self.peek(scope, key)
        slot = self._store(key, value, flags, exptime, cas, FAR, nowait=True)
        if slot < 0:
            self.stats["nt_reads"] += 1
            self.manager.counters["nt_reads"] += 1
            return Item(key, flags, exptime, cas, memoryview(value).toreadonly())
        return self._item(scope, slot, key)

    # -- writing ----------------------------------------------------------------

    def _store(
        self,
        key: Key,
        value: object,
        flags: cython.uint,
        exptime: cython.uint,
        cas: cython.ulonglong,
        wflags: cython.ulonglong,
        forget_far: cython.bint = False,
        nowait: cython.bint = False,
    ) -> cython.Py_ssize_t:
        """Copy an item into the heap and index it (a resident key keeps its slot). May park.

        The allocation comes first: if it raises (WouldPark from the hub,
        OutOfMemory) nothing has changed. An allocation that has to wait
        takes a fresh slot and looks the key up again afterwards: while it
        waited the evacuator may have moved, written back or dropped the old
        item (and its slot may belong to another key by now). With
        forget_far the key's far copy is removed once room is had; a
        resident key without FAR has none (the invariant), so its overwrite
        never consults the filter. With nowait it never parks: no room free
        at once -> nothing stored, -1.
        """
        nkey: cython.Py_ssize_t = len(key)
        if nkey > KEY_MAX:
            raise ValueError(f"key of {nkey} bytes is over {KEY_MAX}")
        h: cython.longlong = hash(key)
        old: cython.Py_ssize_t = self._find(key, h)
        slot: cython.Py_ssize_t = old if old >= 0 else self._new_slot()
        nvalue: cython.Py_ssize_t = len(value)
        size: cython.Py_ssize_t = _HDR + nkey + nvalue
        heap: Heap = self.heap
        loc: cython.Py_ssize_t = heap.alloc_at(size, self.owner_id, slot, False)
        if loc < 0:
            if nowait:
                if old < 0:
                    self._free_slot(slot)
                return -1
            if old >= 0:
                slot = self._new_slot()
            try:
                got = self.manager.alloc(size, self.owner_id, slot)
            except BaseException:
                self._free_slot(slot)
                raise
            loc = got[0] << 24 | got[1]
            old = self._find(key, h)  # after the park: whatever is indexed now
        seg: Segment = heap.table[loc >> 24]
        off: cython.Py_ssize_t = loc & 0xFFFFFF
        reuse: cython.bint = old == slot  # overwrite in place, the index entry stays
        w: cython.ulonglong = 0
        if old >= 0:
            w = self._w(old)
            if reuse:
                if w & _FAR:
                    self.resident_far -= 1
                if w & _PRESENT:
                    heap.free(segment_of(w), offset_of(w))
            else:
                self._remove_local(old)
            if forget_far and w & _FAR:
                self._forget_far(key)
            elif self._fetches:
                self._stale_fetch(key)
        elif forget_far:
            self._forget_far(key)
        now: cython.uint = self._now()
        if cython.compiled and isinstance(key, bytes) and isinstance(value, bytes):
            p: cython.p_uchar = seg.data + off
            cython.cast(cython.p_uint, p)[0] = flags
            cython.cast(cython.p_uint, p)[1] = exptime
            cython.cast(cython.p_ulonglong, p + 8)[0] = cas
            cython.cast(cython.p_uint, p)[4] = now
            p[_NKEY_AT] = nkey
            p[_STATE_AT] = 0
            memcpy(p + _HDR, PyBytes_AS_STRING(key), nkey)
            memcpy(p + _HDR + nkey, PyBytes_AS_STRING(value), nvalue)
        else:
            buf = seg.buf
            ITEM_HEADER.pack_into(buf, off, flags, exptime, cas, now, nkey, 0)
            kend = off + _HDR + nkey
            buf[off + _HDR : kend] = key
            buf[kend : kend + nvalue] = value
        self._set_w(slot, local_word(seg.id, off, wflags | tag_of(h) << _TAG_SHIFT, 1))
        if wflags & _FAR:
            self.resident_far += 1
        if not reuse:
            self.index.add(h, slot)  # after the word: the index reads keys from items
        return slot

    def _stale_fetch(self, key: Key) -> None:
        """A far read of `key` in flight must not re-admit what it brings back."""
        fetch = self._fetches.get(key)
        if fetch is not None:
            fetch.stale = True

    def _forget_far(self, key: Key) -> None:
        """Remove the far copy of `key` (async, ordered); its filter entry goes on the reply."""
        self._stale_fetch(key)
        if key not in self.filter:
            return
        far = self.manager.far
        st = self.far_ds
        if far is not None and st is not None and st.ds and far.available:
            self.stats["far_removes"] += 1
            gen = self._generation
            far.submit_named(
                Op.REMOVE,
                st.ds,
                key,
                encode_name(key),
                lambda status, body, key=key: self._removed(key, status, gen),
            )
        else:
            # nobody to ask: drop the entry now, so that a far copy left
            # behind can never be read back, and remove it when the node is back
            self.filter.discard(key)
            self._unsure_copy(key)

    def _removed(self, key: Key, status: Any, gen: int) -> None:
        """A REMOVE's reply (hub): OK, the copy was there; None, it may still be."""
        if gen == self._generation and (status == Status.OK or status is None):
            self.filter.discard(key)
            if status is None:
                self._unsure_copy(key)

    def _cleared(self, status: Any, body: Any) -> None:
        """A flush_all's far clear got no answer: send it again when the node answers."""
        if status is None:
            self._clear_pending = True

    def _unsure_copy(self, key: Key) -> None:
        """The far node may hold a stale copy of `key`: REMOVE it when the node answers."""
        if key in self._unsure:
            return
        if len(self._unsure) < UNSURE_MAX:
            self._unsure.add(key)
            self.stats["far_unsure"] += 1
        else:
            self.stats["far_unsure_dropped"] += 1

    def _remove_unsure(self, key: Key) -> None:
        """REMOVE a maybe-stale far copy now, or once the node answers again. Never parks."""
        far = self.manager.far
        st = self.far_ds
        if far is None or st is None or not st.ds or not far.available:
            self._unsure_copy(key)
            return
        gen = self._generation

        def done(status: Any, body: Any) -> None:
            if status is None and gen == self._generation:
                self._unsure_copy(key)  # no answer: try again when it answers

        far.submit_named(Op.REMOVE, st.ds, key, encode_name(key), done)

    def evac_unsure(self, body: bytes) -> None:
        """A write-back the node may hold though the item moved on: remove that copy."""
        self._remove_unsure(bytes(decode_write(body)[0]))

    def on_far_back(self) -> None:
        """The far node answers again: first remove what it may hold stale (hub)."""
        far = self.manager.far
        st = self.far_ds
        if far is None or st is None or not st.ds:
            return
        if self._clear_pending:
            self._clear_pending = False
            self._unsure.clear()
            far.broadcast(Op.COMPUTE, st.ds, encode_compute("clear", b""), self._cleared)
        keys, self._unsure = self._unsure, set()
        for key in keys:
            self._remove_unsure(key)

    def _remove_local(self, slot: cython.Py_ssize_t) -> cython.void:
        w: cython.ulonglong = self._w(slot)
        self._drop_slot(slot)  # it reads the key: before the bytes may be released
        if w & PRESENT:
            self.heap.free(segment_of(w), offset_of(w))

    def set(
        self,
        key: Key,
        value: object,
        flags: cython.uint = 0,
        exptime: cython.uint = 0,
        cas: cython.ulonglong = 0,
    ) -> None:
        """Store an item (dirty); a far copy of the key is removed. May park.

        From the hub with no room free it raises WouldPark, table untouched.
        """
        self._store(key, value, flags, exptime, cas, DIRTY, forget_far=True)

    def delete(self, key: Key) -> bool:
        """Remove `key` here and on the far node; True if it was resident or may be far."""
        slot = self._find(key, hash(key))
        found = slot >= 0
        if found:
            self._remove_local(slot)
        maybe_far = key in self.filter
        self._forget_far(key)
        return found or maybe_far

    def delete_far(self, key: Key) -> bool:
        """Remove a non-resident key's far copy and learn if it was there. May park."""
        _hub.check_can_park()
        far = self.manager.far
        if far is None or not far.available:
            raise FarUnavailable("far node unavailable")
        self._stale_fetch(key)
        ds = self._far_ds()
        self.stats["far_removes"] += 1
        try:
            status, _ = far.call_named(Op.REMOVE, ds, key, encode_name(key))
        except FarMemoryError:
            self.filter.discard(key)  # it may still be there: never read it back
            self._unsure_copy(key)
            raise
        if status == Status.OK:
            self.filter.discard(key)
        return status == Status.OK

    def clear(self) -> None:
        """Forget every item, here and on the far node (flush_all)."""
        heap = self.heap
        for slot in self.index.slots():
            w = self._w(slot)
            if w & PRESENT:
                heap.free(segment_of(w), offset_of(w))
            self._free_slot(slot)
        self.index.clear()
        self.resident_far = 0
        for fetch in self._fetches.values():
            fetch.stale = True
        self.filter.clear()
        self._generation += 1
        far = self.manager.far
        st = self.far_ds
        self._unsure.clear()
        if far is not None and st is not None and st.ds and far.available:
            far.broadcast(Op.COMPUTE, st.ds, encode_compute("clear", b""), self._cleared)
        elif far is not None:
            self._clear_pending = True  # sent when the node answers again

    # -- in-place changes of a resident item (memcached's touch, meta flags) ----------

    def _changed(self, item: Item) -> None:
        """The item differs from any far copy now: drop that copy, mark it dirty."""
        w = self.words[item.slot]
        if w & FAR:
            self._forget_far(item.key)
            self.resident_far -= 1
            w &= ~FAR
        self.words[item.slot] = w | DIRTY

    def set_exptime(self, item: Item, exptime: int) -> None:
        """Give a resident item a new exptime (touch, gat, T flags)."""
        _EXPTIME.pack_into(item.seg.buf, item.off + 4, exptime)
        item.exptime = exptime
        self._changed(item)

    def set_cas(self, item: Item, cas: int) -> None:
        """Give a resident item a new cas unique (md I, E flags)."""
        _CAS.pack_into(item.seg.buf, item.off + 8, cas)
        item.cas = cas
        self._changed(item)

    def set_state(self, item: Item, state: int, atime: int | None = None) -> None:
        """Record a resident item's FETCHED/STALE/TOKEN_SENT bits and access time.

        Local bookkeeping only: it does not dirty the item (the far node keeps
        no such state).
        """
        buf = item.seg.buf
        if atime is not None:
            _ATIME.pack_into(buf, item.off + 16, atime)
        buf[item.off + _STATE_AT] = state

    def can_offload(self) -> bool:
        """Whether a far item may be changed at the far node (one copy: R = 1).

        With replicas an offloaded change could reach one copy and miss
        another; callers then bring the item home, change it there and let it
        be written back to every replica (the set removes the far copies).
        """
        far = self.manager.far
        return far is not None and far.can_offload()

    def offload(self, key: Key, op: str, *fields: int, data: bytes = b"") -> tuple:
        """Run a remote-agent op on the far copy of `key`: (status, fields, data). May park.

        Only for keys that are not resident, and only if can_offload(); the
        caller updates the filter on NOT_FOUND (the far copy is gone).
        """
        _hub.check_can_park()
        far = self.manager.far
        if far is None or not far.available:
            raise FarUnavailable("far node unavailable")
        self.manager.counters["offloads"] += 1
        fetch = self._fetches.pop(key, None)
        if fetch is not None:
            # a read of the old copy is in flight (a prefetch, say): what it
            # brings back must not be admitted, and later readers must not
            # join it: they read again, after this change on the connection
            fetch.stale = True
        body = encode_compute(op, key, encode_compute_args(op, *fields, data=data))
        status, rbody = far.call_named(Op.COMPUTE, self._far_ds(), key, body)
        if status == Status.NOT_FOUND:
            return status, (), b""  # its filter entry: see _fetched
        if status in (Status.OK,):
            rfields, rdata = decode_compute_reply(op, rbody)
            return status, rfields, rdata
        return status, (), rbody

    # -- evacuation handler ---------------------------------------------------------

    def _exptime_of(self, slot: cython.Py_ssize_t) -> cython.uint:
        w: cython.ulonglong = self._w(slot)
        seg: Segment = self._seg(w)
        if cython.compiled:
            return cython.cast(cython.p_uint, seg.data + (w & _OFF_MASK))[1]
        return _EXPTIME.unpack_from(seg.buf, (w & OFF_MASK) + 4)[0]

    def evac_dead(self, slot: cython.Py_ssize_t) -> cython.bint:
        """Expired items are dead."""
        exptime: cython.uint = self._exptime_of(slot)
        return exptime != 0 and exptime <= self._now()

    def evac_reclaim(self, slot: cython.Py_ssize_t) -> None:
        """An expired item is gone (its far copy expires on the node)."""
        self.stats["reclaimed"] += 1
        self._drop_slot(slot)

    def evac_writeback(self, slot: int, data: memoryview) -> tuple[int, int, bytes, bytes] | None:
        """The far WRITE of a dirty item, fields and all."""
        st = self.far_ds
        if st is None or not st.ds:
            return None
        flags, exptime, cas, _atime, nkey, _state = ITEM_HEADER.unpack_from(data, 0)
        key = bytes(data[_HDR : _HDR + nkey])
        value = bytes(data[_HDR + nkey :])
        self.manager.counters["far_writes"] += 1
        return Op.WRITE, st.ds, encode_write(key, value, flags, exptime, cas), key

    def evac_written(self, slot: int, marked: int) -> None:
        """The far node now holds the item: its key may be far from now on."""
        if not marked & FAR:  # the evacuator sets FAR on the word next
            self.filter.add(bytes(self._key_at(slot)))
            self.resident_far += 1

    def evac_far(self, slot: cython.Py_ssize_t) -> None:
        """The item left local memory; its key stays in the filter."""
        self._drop_slot(slot)

    def evac_forget(self, slot: cython.Py_ssize_t) -> None:
        """Evicted with no far copy (no far node): the cache forgets it."""
        self.stats["evictions"] += 1
        self._drop_slot(slot)

    def on_far_node_cleared(self, index: int) -> None:
        """Node `index` of a tier rejoined empty: resident items with a copy there go dirty.

        They keep FAR and their filter entries (other replicas may still hold
        identical copies, which reads fail over to) and are written back to
        every replica again. Far-only items are left to their other replicas;
        one whose every copy is gone reads as a miss (its filter entry stays
        until the key is removed or written again).
        """
        far = self.manager.far
        st = self.far_ds
        if far is None or st is None:
            return
        words = self.words
        for slot in self.index.slots():
            w = words[slot]
            if w & FAR and index in far.replicas_of(st.ds, self._key_at(slot)):
                words[slot] = w | DIRTY

    def rereplicate(self, keys: list, done: Callable, skip: int = -1) -> None:
        """Bring the far copies of `keys` to their current replica sets (runtime.rereplicate).

        A resident key with a far copy goes dirty: its write-back reaches
        every replica. A far-only one is read (a shared far read: a change
        meanwhile marks it stale) and what lands is written to its replica
        set but node `skip` (which holds it: the sweep's source) at once, in
        the same hub turn, so any later change is ordered after the copy on
        every node. done({key: seen to}) runs once every
        key is (False: a read or write got no answer). Never parks.
        """
        far = self.manager.far
        st = self.far_ds
        recopy = _Recopy(self, len(keys), done, skip)
        words = self.words
        for key in keys:
            slot = self._find(key, hash(key))
            if slot >= 0:
                w = words[slot]
                if w & FAR:
                    words[slot] = w | DIRTY
                recopy.one(key, True)
                continue
            if key not in self.filter:  # not far (removed, or never): nothing to copy
                recopy.one(key, True)
                continue
            if far is None or not far.available or st is None or not st.ds:
                recopy.one(key, False)
                continue
            fetch = self._fetches.get(key)
            if fetch is not None:
                fetch.join(recopy)
                continue
            fetch = self._fetches[key] = _new_fetch(self, key)
            fetch.join(recopy)
            self.manager.counters["far_reads"] += 1
            far.submit_named(_OP_READ, st.ds, key, encode_name(key), fetch)

    def _recopy(self, recopy: _Recopy, key: Key, result: Any, exc: Any) -> None:
        """One far read of rereplicate() landed (hub): write the item to its replicas."""
        if exc is not None:
            recopy.one(key, False)
            return
        if result is None or result is _STALE:
            recopy.one(key, True)  # no copy left anywhere, or changed: the change reaches all
            return
        flags, exptime, cas, value = result
        st = self.far_ds
        far = self.manager.far
        if self._expired(exptime) or st is None or not st.ds:
            recopy.one(key, True)
            return
        self.manager.counters["far_recopies"] += 1
        far.copy_named(
            st.ds,
            key,
            encode_write(key, value, flags, exptime, cas),
            recopy.skip,
            lambda status, body, key=key: recopy.one(key, status == Status.OK),
        )

    def on_far_reset(self) -> None:
        """The far node restarted: far items are gone; resident ones are the only copies."""
        lost = self.far_only()
        self.stats["far_lost"] += lost
        if lost:
            log.warning("%d items whose only copy was far are lost with that node", lost)
        self.filter.clear()
        self._generation += 1
        self._unsure.clear()
        self._clear_pending = False
        self.resident_far = 0
        words = self.words
        for slot in self.index.slots():
            w = words[slot]
            if w & FAR:
                words[slot] = (w & ~FAR) | DIRTY

    # -- the far node's `gone` notices ----------------------------------------------

    def _poll_gone(self, i: int = 0) -> None:
        """Ask far node `i` which keys it evicted or expired (hub; never parks)."""
        far = self.manager.far
        st = self.far_ds
        if far is None or far.closed:
            return
        client, part = far.members(st)[i] if st is not None else (far, None)
        if not (far.available and client.available and part is not None and part.ds):
            self.manager.hub.loop.call_later(GONE_PERIOD, self._poll_gone, i)
            return
        gen = self._generation
        client.submit(
            Op.COMPUTE,
            part.ds,
            encode_compute("gone", b""),
            lambda status, body: self._gone(status, body, gen, i),
        )

    def _gone(self, status: Any, body: Any, gen: int, i: int = 0) -> None:
        """Drop the filter entries of keys node `i` lost by itself; poll it again.

        With several nodes only the key's first replica's word counts (each
        node evicts and expires on its own, and a filter entry must be dropped
        at most once), and the key's other copies are removed: with no filter
        entry they could be left stale by a later change.
        """
        more = False
        if status == Status.OK and gen == self._generation:
            try:
                (lost,), data = decode_compute_reply("gone", body)
                names = decode_names(data)
            except FrameError as exc:
                log.warning("bad gone reply from the far node: %s", exc)
            else:
                far = self.manager.far
                if len(far.nodes()) == 1:
                    discard = self.filter.discard
                    for name in names:
                        discard(name)
                    self.stats["far_gone"] += len(names)
                else:
                    self._gone_from(i, names)
                self.stats["far_gone_lost"] += lost
                more = len(names) >= GONE_BATCH
        self.manager.hub.loop.call_later(0 if more else GONE_PERIOD, self._poll_gone, i)

    def _gone_from(self, i: int, names: list) -> None:
        """A tier's node `i` evicted or expired `names`: forget those it is the primary of."""
        far = self.manager.far
        st = self.far_ds
        replicated = far.replica_count() > 1
        words = self.words
        for name in names:
            key = bytes(name)
            if far.first_replica(st.ds, key) != i:
                continue  # another replica may hold it: its primary speaks for it
            slot = self._find(key, hash(key))
            if slot >= 0:
                w = words[slot]
                if w & FAR:  # resident: now it is the only copy
                    words[slot] = (w & ~FAR) | DIRTY
                    self.resident_far -= 1
            self.filter.discard(key)
            self.stats["far_gone"] += 1
            if replicated:
                self._remove_unsure(key)


_STALE = object()


def _switch_waiter(waiter: _hub.Waiter, results: dict, exc: Any) -> None:
    """fetch_many's on_done for a parked reader: resume it with (results, error)."""
    waiter.switch((results, exc))


def _ignore(status: Any, body: Any) -> None:
    """Callback for requests whose outcome changes nothing (a REMOVE)."""
