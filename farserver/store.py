"""The node's data structures (AIFM's construct/destruct): box, array, hash table.

    Box        object id (u64) -> bytes                        dict
    Array      index < length -> exactly elem_size bytes       dict (sparse)
    HashTable  key (<= 250 B) -> Item(flags, exptime, cas, value)
               LRU order: an OrderedDict; reads and writes move to the end

Every structure charges its objects to the node's `Budget` (memory.py) and
gives the bytes back when an object goes or the structure is destructed.
Every write also gives the object a new sequence number in the structure's
`SeqLog` (seqlog.py), which SCAN walks: reads, LRU moves and eviction order
never change it, so scan cursors are stable.
Invariants:
- `self.bytes` is the sum of this structure's object costs; the budget's
  `used` is the sum over all structures.
- A write that does not fit raises NoSpace before it changes anything,
  except in an evicting table, where a failed WRITE also drops the key's old
  item (memcached unlinks on a failed set: a stale value must not survive).
- An item with exptime != 0 and exptime <= now does not exist: reads treat
  it as missing and reclaim it; `sweep` reclaims the rest from a min-heap of
  (exptime, key), whose stale entries are skipped and, when they outnumber
  live items twice over, rebuilt away.
- Box and array objects have flags, exptime and cas 0 on the wire.
- Every object has exactly one live log entry, (its seq, its name); the log
  holds at most 2 x objects + SLACK entries once a write or removal is done.
- `scan` changes nothing: no LRU move, no reclaiming of expired items.
"""

from __future__ import annotations

import heapq
import struct
from collections import OrderedDict, deque
from collections.abc import Iterator

from farserver.errors import BadRequest, NoSpace
from farserver.memory import INDEX_OVERHEAD, ITEM_OVERHEAD, Budget
from farserver.seqlog import SLACK, Entry, SeqLog
from protocol.far import ITEM, DsType

__all__ = ["Array", "Box", "HashTable", "Item", "Structure"]

_INDEX = struct.Struct("<Q")
_INDEX_COST = _INDEX.size + INDEX_OVERHEAD  # an id's 8 bytes + per-object overhead
_NO_ITEM_HEADER = ITEM.pack(0, 0, 0)  # boxes and arrays: flags, exptime, cas all 0
_HEAP_SLACK = 1024  # stale expiry entries tolerated beyond 2x live items
GONE_LOG = 1 << 16  # keys that left without a REMOVE, kept for the client's `gone`


class Item:
    """A hash-table value with memcached's metadata."""

    __slots__ = ("flags", "exptime", "cas", "value", "seq")

    def __init__(self, flags: int, exptime: int, cas: int, value: bytes):
        self.flags = flags  # u32, opaque to the node
        self.exptime = exptime  # absolute unix seconds; 0 = never
        self.cas = cas  # u64, assigned by the client
        self.value = value
        self.seq = 0  # its last write's seq in the table's SeqLog (set when stored)

    def header(self) -> bytes:
        """The 16-byte item header of a READ reply."""
        return ITEM.pack(self.flags, self.exptime, self.cas)


def _index(name: bytes) -> int:
    if len(name) != 8:
        raise BadRequest(f"a box or array name is an 8-byte index, not {len(name)} bytes")
    return _INDEX.unpack(name)[0]


class _Indexed:
    """Shared by Box and Array: u64 id -> bytes, no eviction, no expiry."""

    __slots__ = ("ds", "budget", "objects", "bytes", "seqs", "log")
    kind: DsType

    def __init__(self, ds: int, budget: Budget):
        self.ds = ds  # this structure's id on the node
        self.budget = budget
        self.objects: dict[int, bytes] = {}
        self.bytes = 0  # sum of this structure's object costs
        self.seqs: dict[int, int] = {}  # index -> its last write's seq; same keys as objects
        self.log = SeqLog(int_names=True)  # (seq, index) per write, for SCAN

    def __len__(self) -> int:
        return len(self.objects)

    def _check(self, index: int, value: bytes | None) -> None:
        """Raise BadRequest unless `value` may be stored at `index` (None: any index)."""

    def read(self, name: bytes, now: int) -> tuple[bytes, bytes] | None:
        """(item header, value) of an object, or None if it was never written."""
        index = _index(name)
        self._check(index, None)
        value = self.objects.get(index)
        return None if value is None else (_NO_ITEM_HEADER, value)

    def write(self, name: bytes, flags: int, exptime: int, cas: int, value: bytes, now: int):
        """Store `value` at the name's index (flags, exptime and cas are not kept)."""
        index = _index(name)
        self._check(index, value)
        self.store_many([(index, value)])

    def remove(self, name: bytes, now: int) -> bool:
        """Drop an object; False if there was none."""
        index = _index(name)
        self._check(index, None)
        value = self.objects.pop(index, None)
        if value is None:
            return False
        del self.seqs[index]
        self._uncharge(len(value) + _INDEX_COST)
        if len(self.log.seqs) > 2 * len(self.objects) + SLACK:
            self.log.compact(self._live)
        return True

    def store_many(self, pairs: list[tuple[int, bytes | None]]) -> None:
        """Set (index, value) pairs at once, None deleting; NoSpace before any change."""
        objects = self.objects
        delta = 0
        for index, value in pairs:
            old = objects.get(index)
            if old is not None:
                delta -= len(old) + _INDEX_COST
            if value is not None:
                delta += len(value) + _INDEX_COST
        if delta > 0:
            self.budget.make_room(delta)
        seqs = self.seqs
        log = self.log
        for index, value in pairs:
            if value is None:
                if objects.pop(index, None) is not None:
                    del seqs[index]
            else:
                objects[index] = value
                seqs[index] = log.add(index)
        self.bytes += delta
        self.budget.used += delta
        if len(log.seqs) > 2 * len(objects) + SLACK:
            log.compact(self._live)

    def scan(self, cursor: int, max_items: int, max_bytes: int, now: int):
        """SCAN: (next_cursor, entries) from `cursor` on, in write order (seqlog.py)."""
        objects = self.objects
        seqs = self.seqs

        def entry_of(seq: int, index: int) -> Entry | None:
            if seqs.get(index) != seq:
                return None  # removed or written again since
            return _INDEX.pack(index), 0, 0, 0, objects[index]

        return self.log.scan(cursor, max_items, max_bytes, entry_of)

    def _live(self, seq: int, index: int) -> bool:
        return self.seqs.get(index) == seq

    def free(self) -> None:
        """Destruct: give every byte back."""
        self._uncharge(self.bytes)
        self.objects.clear()
        self.seqs.clear()
        self.log.clear()

    def _uncharge(self, cost: int) -> None:
        self.bytes -= cost
        self.budget.used -= cost


class Box(_Indexed):
    """Objects addressed by a u64 id, any size: AIFM's RemBox, many per ds."""

    __slots__ = ()
    kind = DsType.BOX


class Array(_Indexed):
    """A fixed-length array of fixed-size elements, stored sparsely."""

    __slots__ = ("elem_size", "length")
    kind = DsType.ARRAY

    def __init__(self, ds: int, budget: Budget, elem_size: int, length: int):
        super().__init__(ds, budget)
        self.elem_size = elem_size  # bytes of every element, > 0
        self.length = length  # element count; indexes are 0..length-1

    def _check(self, index: int, value: bytes | None) -> None:
        if index >= self.length:
            raise BadRequest(f"index {index} out of range for length {self.length}")
        if value is not None and len(value) != self.elem_size:
            raise BadRequest(f"element of {len(value)} bytes, the array's are {self.elem_size}")

    def check_range(self, start: int, count: int) -> range:
        """Indexes start..start+count-1, all in range, else BadRequest."""
        if start + count > self.length:
            raise BadRequest(f"range {start}+{count} out of range for length {self.length}")
        return range(start, start + count)

    def elements(self, span: range) -> Iterator[tuple[int, bytes]]:
        """(index, value) of the written elements in `span`, in index order."""
        objects = self.objects
        if len(span) <= len(objects):
            for index in span:
                value = objects.get(index)
                if value is not None:
                    yield index, value
        else:  # sparse: walk what exists, not the whole span
            for index in sorted(i for i in objects if span.start <= i < span.stop):
                yield index, objects[index]


class HashTable:
    """Key -> Item in LRU order; with evict=True, a cache the node may shrink."""

    __slots__ = ("ds", "budget", "evict", "items", "bytes", "_heap", "gone", "gone_lost", "log")
    kind = DsType.HASHTABLE

    def __init__(self, ds: int, budget: Budget, evict: bool):
        self.ds = ds  # this structure's id on the node
        self.budget = budget
        self.evict = evict  # LRU items may be dropped to make room
        self.items: OrderedDict[bytes, Item] = OrderedDict()  # LRU first
        self.bytes = 0  # sum of this table's item costs
        self._heap: list[tuple[int, bytes]] = []  # (exptime, key), may hold stale entries
        self.gone: deque[bytes] = deque()  # keys evicted/expired here, oldest first
        self.gone_lost = 0  # notices dropped because the log was full
        self.log = SeqLog(int_names=False)  # (seq, key) per write, for SCAN
        if evict:
            budget.add_evictable(self)

    def __len__(self) -> int:
        return len(self.items)

    # -- the wire ops (READ, WRITE, REMOVE) ---------------------------------

    def read(self, name: bytes, now: int) -> tuple[bytes, bytes] | None:
        """(item header, value) of a live item, bumped to most recent; else None."""
        item = self.get(name, now)
        return None if item is None else (item.header(), item.value)

    def write(self, name: bytes, flags: int, exptime: int, cas: int, value: bytes, now: int):
        """Set an item unconditionally (memcached's set)."""
        self.put(name, Item(flags, exptime, cas, value), now, forget=True)

    def remove(self, name: bytes, now: int) -> bool:
        """Drop an item; False if there was no live one."""
        item = self.items.pop(name, None)
        if item is None:
            return False
        self._uncharge(name, item)
        if item.exptime and item.exptime <= now:
            self.budget.expired += 1
            self._gone(name)
            return False
        return True

    # -- item access for compute ops -----------------------------------------

    def get(self, key: bytes, now: int) -> Item | None:
        """The live item of `key`, moved to the LRU's recent end; None if absent."""
        item = self.items.get(key)
        if item is None:
            return None
        if item.exptime and item.exptime <= now:
            del self.items[key]
            self._uncharge(key, item)
            self.budget.expired += 1
            self._gone(key)
            return None
        self.items.move_to_end(key)
        return item

    def put(self, key: bytes, item: Item, now: int, forget: bool) -> None:
        """Store `item` as the most recent; NoSpace if it does not fit.

        forget: on NoSpace in an evicting table, also drop the old item (set).
        """
        items = self.items
        budget = self.budget
        old = items.get(key)
        if item.exptime and item.exptime <= now:  # born expired: only the removal shows
            if old is not None:
                del items[key]
                self._uncharge(key, old)
                self._gone(key)
            return
        delta = len(item.value) + (0 if old is not None else len(key) + ITEM_OVERHEAD)
        if old is not None:
            delta -= len(old.value)
        if delta > 0 and budget.used + delta > budget.limit:
            try:
                budget.make_room(delta, self, key)
            except NoSpace:
                if forget and self.evict and key in items:
                    self._uncharge(key, items.pop(key))
                    self._gone(key)
                raise
        if old is not None:
            del items[key]  # re-inserted: the dict keeps this key object, as the log does
        items[key] = item
        self.bytes += delta
        budget.used += delta
        if item.exptime:
            self.expire_at(key, item.exptime)
        self._logged(key, item)

    def retime(self, key: bytes, item: Item, exptime: int) -> None:
        """Give the stored `item` of `key` a new exptime (touch, gat): a write, for SCAN."""
        items = self.items
        del items[key]  # to the recent end (get() put it there) with this key object
        items[key] = item
        item.exptime = exptime
        if exptime:
            self.expire_at(key, exptime)
        self._logged(key, item)

    def scan(self, cursor: int, max_items: int, max_bytes: int, now: int):
        """SCAN: (next_cursor, entries) from `cursor` on, in write order (seqlog.py)."""
        items = self.items

        def entry_of(seq: int, key: bytes) -> Entry | None:
            item = items.get(key)  # a plain dict lookup: no LRU move
            if item is None or item.seq != seq:
                return None  # gone or written again since
            if item.exptime and item.exptime <= now:
                return None  # expired: never returned (sweep or a read reclaims it)
            return key, item.flags, item.exptime, item.cas, item.value

        return self.log.scan(cursor, max_items, max_bytes, entry_of)

    def _logged(self, key: bytes, item: Item) -> None:
        """Give `item`, just stored under `key`, the next seq."""
        log = self.log
        item.seq = log.add(key)
        if len(log.seqs) > 2 * len(self.items) + SLACK:
            log.compact(self._live)

    def _live(self, seq: int, key: bytes) -> bool:
        item = self.items.get(key)
        return item is not None and item.seq == seq

    def expire_at(self, key: bytes, exptime: int) -> None:
        """Note that `key` expires at `exptime` (call after changing an item's exptime)."""
        heap = self._heap
        heapq.heappush(heap, (exptime, key))
        if len(heap) > 2 * len(self.items) + _HEAP_SLACK:
            self._heap = [(it.exptime, k) for k, it in self.items.items() if it.exptime]
            heapq.heapify(self._heap)

    def clear(self) -> None:
        """Drop every item (the table stays)."""
        self.budget.used -= self.bytes
        self.bytes = 0
        self.items.clear()
        self._heap = []
        self.gone.clear()  # the client clears its filter with the table
        self.log.clear()

    # -- reclaiming ---------------------------------------------------------

    def cost(self, key: bytes) -> int:
        """What the item `key` costs (0 if there is none)."""
        item = self.items.get(key)
        return 0 if item is None else len(key) + len(item.value) + ITEM_OVERHEAD

    def evict_to(self, target: int, keep: bytes | None) -> None:
        """Drop LRU items (never `keep`) until the budget's use is <= target."""
        items = self.items
        budget = self.budget
        while budget.used > target and items:
            key, item = items.popitem(last=False)
            if key == keep:
                items[key] = item  # back at the recent end
                if len(items) == 1:
                    return
                continue
            self._uncharge(key, item)
            budget.evictions += 1
            self._gone(key)

    def sweep(self, now: int, limit: int) -> int:
        """Reclaim up to `limit` expired items; returns how many."""
        heap = self._heap
        items = self.items
        done = 0
        while heap and heap[0][0] <= now and done < limit:
            exptime, key = heapq.heappop(heap)
            item = items.get(key)
            if item is not None and item.exptime and item.exptime <= now:
                del items[key]
                self._uncharge(key, item)
                self.budget.expired += 1
                self._gone(key)
                done += 1
        return done

    def free(self) -> None:
        """Destruct: give every byte back and leave the eviction list."""
        self.clear()
        if self.evict:
            self.budget.remove_evictable(self)

    def _gone(self, key: bytes) -> None:
        """Log a key that left without a REMOVE (the client's filter still holds it)."""
        if len(self.gone) >= GONE_LOG:
            self.gone.popleft()
            self.gone_lost += 1
        self.gone.append(key)

    def take_gone(self, limit: int) -> tuple[int, list[bytes]]:
        """(notices lost since last time, up to `limit` gone keys), draining the log."""
        gone = self.gone
        keys = [gone.popleft() for _ in range(min(limit, len(gone)))]
        lost, self.gone_lost = self.gone_lost, 0
        return lost, keys

    def _uncharge(self, key: bytes, item: Item) -> None:
        """Give back a removed item's bytes (it is out of `items` already)."""
        cost = len(key) + len(item.value) + ITEM_OVERHEAD
        self.bytes -= cost
        self.budget.used -= cost
        if len(self.log.seqs) > 2 * len(self.items) + SLACK:
            self.log.compact(self._live)


Structure = Box | Array | HashTable
