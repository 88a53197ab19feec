"""The node's memory limit: what every stored object costs, and who gives way.

An object costs `len(name) + len(value) + overhead` bytes, name being the
key of a hash-table item and 8 bytes (the u64 id) for a box or array element.
The overhead is the CPython memory around one object that is not its bytes,
measured with tracemalloc on the 2-core dev machine (CPython 3.11):

    hash-table item   428 B: 2 bytes-object headers (66), slotted Item (72),
                      cas int (32), OrderedDict slot + link node (~120), expiry
                      heap entry and exptime int (~90), SCAN's write-order log
                      (seqlog.py: seq int 32, two 8-byte log slots) -> ITEM_OVERHEAD 432
    box/array object  210 B: bytes header (33), int id (32),
                      dict slot (~44), SCAN's log: a seqs dict slot (~53),
                      seq int (32), two 8-byte log slots       -> INDEX_OVERHEAD 224

(`python -c 'import farserver.memory as m; print(m.measure())'` re-measures;
before SCAN's log it measured 371 and 109.) Dead log entries (an object
rewritten or gone since its entry, until the log is compacted, at most one
per live object plus 1024) are not charged: 16 B each, plus in a hash table
the dropped key bytes object of a rewritten item.
The limit (`-m` MiB) bounds the sum of costs, so the process's RSS is about
that plus the interpreter's ~20 MB.

When a write would pass the limit, `make_room` evicts least-recently-used
items from the tables constructed with {"evict": true}: the table being
written first, then the others in construction order. Boxes, arrays and
non-evicting tables are never evicted: when evicting every cache item would
not make room, the write fails with NoSpace before anything is evicted. The cache may forget,
never corrupt.
"""

from __future__ import annotations

from typing import Protocol

from farserver.errors import NoSpace

__all__ = ["INDEX_OVERHEAD", "ITEM_OVERHEAD", "Budget", "Evictable", "measure"]

ITEM_OVERHEAD = 432  # bytes charged per hash-table item beyond key and value
INDEX_OVERHEAD = 224  # bytes charged per box/array object beyond id and value


class Evictable(Protocol):
    """A structure that can give memory back by dropping its coldest objects."""

    bytes: int  # sum of its objects' costs

    def cost(self, key: bytes) -> int:
        """What the object `key` costs (0 if there is none)."""

    def evict_to(self, target: int, keep: bytes | None) -> None:
        """Drop LRU objects (never `keep`) until the budget's use is <= target."""


class Budget:
    """Bytes charged against the node's limit, and eviction across cache tables."""

    __slots__ = ("limit", "used", "evictions", "expired", "_evictable")

    def __init__(self, limit: int):
        self.limit = limit  # bytes: -m MiB
        self.used = 0  # bytes charged, 0 <= used (<= limit unless the limit shrank)
        self.evictions = 0  # live objects dropped to make room
        self.expired = 0  # expired objects reclaimed (lazily, by sweep or eviction)
        self._evictable: list[Evictable] = []  # {"evict": true} tables, oldest first

    def add_evictable(self, table: Evictable) -> None:
        """`table` may now be evicted from to make room."""
        self._evictable.append(table)

    def remove_evictable(self, table: Evictable) -> None:
        """`table` is destructed: no longer an eviction candidate."""
        self._evictable = [t for t in self._evictable if t is not table]

    def make_room(self, nbytes: int, first: Evictable | None = None, keep: bytes | None = None):
        """Evict until `nbytes` more fit (first from `first`, never `keep`), else NoSpace.

        Evicts nothing when even evicting everything would not do. Charges
        nothing: the caller adds `nbytes` to `used` once it has stored.
        """
        target = self.limit - nbytes
        if self.used <= target:
            return
        reclaimable = sum(t.bytes for t in self._evictable)
        if first is not None and keep is not None and first in self._evictable:
            reclaimable -= first.cost(keep)
        if self.used - reclaimable > target:
            raise NoSpace(
                f"{nbytes} bytes do not fit: {self.used} of {self.limit} in use,"
                f" {reclaimable} evictable"
            )
        if first is not None and first in self._evictable:
            first.evict_to(target, keep)
        for table in self._evictable:
            if self.used <= target:
                break
            if table is not first:
                table.evict_to(target, None)
        assert self.used <= target, "evictable bytes miscounted"


def measure(count: int = 100_000) -> tuple[float, float]:
    """Bytes per object beyond name and value: (hash-table item, array element)."""
    import os
    import time
    import tracemalloc

    from farserver.store import Array, HashTable

    now = int(time.time())
    budget = Budget(1 << 60)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = HashTable(1, budget, evict=True)
    for i in range(count):  # 16-byte keys, 100-byte values, as frames deliver them
        table.write(os.urandom(16), 0, now + 3600, (1 << 40) + i, os.urandom(100), now)
    item = (tracemalloc.get_traced_memory()[0] - base) / count - 116
    array = Array(2, budget, 64, count)
    base = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        array.store_many([(i, os.urandom(64))])
    element = (tracemalloc.get_traced_memory()[0] - base) / count - 72
    tracemalloc.stop()
    return item, element
