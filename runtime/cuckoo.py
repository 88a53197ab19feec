"""A cuckoo filter: which keys may be far, in about 2 bytes per key.

The remoteable hash table keeps only resident items in its index; keys whose
items live only on the far node are remembered here, so that a miss on a key
that was never stored costs no far round trip (DESIGN §6). Unlike a Bloom
filter it supports deletion (a key set again locally, deleted, or found gone
on the far node leaves the filter), so it does not silt up under churn.

    buckets: 4 slots of 16-bit fingerprints (array('H'), 0 = empty)
    i1 = hash(key) mod B,  i2 = i1 xor hash(fingerprint) mod B   (B a power of 2)

False positives: at most 8 / 65535 per lookup (~0.012%), i.e. >= 99.98% of
misses on never-stored keys are answered locally. Load up to ~95%; when an
insert fails after 500 kicks, a new filter of twice the size is chained
(lookups ask each). Memory: 2 bytes per slot, ~2.1 bytes per key at 95%.
Deleting a key that was never inserted may delete another key's matching
fingerprint: callers delete only keys they inserted.
"""

from __future__ import annotations

import random
from array import array

__all__ = ["CuckooFilter"]

SLOTS = 4  # fingerprints per bucket
MAX_KICKS = 500


def _hash(key: bytes) -> int:
    # Python's own (SipHash) hash of the key, made unsigned: cached on the key
    # object, so the index probe and the filter test of one request hash once.
    # Its seed is per process, and so is the filter (it is never persisted).
    return hash(key) & 0xFFFF_FFFF_FFFF_FFFF


class _Table:
    __slots__ = ("buckets", "mask", "fps", "count")

    def __init__(self, buckets: int):
        self.buckets = buckets  # a power of two
        self.mask = buckets - 1
        self.fps = array("H", bytes(2 * SLOTS * buckets))  # fingerprints, 0 = empty
        self.count = 0

    def _alt(self, i: int, fp: int) -> int:
        return (i ^ (fp * 0x5BD1E995)) & self.mask

    def find(self, i1: int, fp: int) -> int:
        """Slot index holding fp in either bucket, or -1."""
        fps = self.fps
        for i in (i1, self._alt(i1, fp)):
            base = i * SLOTS
            for s in range(base, base + SLOTS):
                if fps[s] == fp:
                    return s
        return -1

    def insert(self, i1: int, fp: int, rnd: random.Random) -> bool:
        fps = self.fps
        for i in (i1, self._alt(i1, fp)):
            base = i * SLOTS
            for s in range(base, base + SLOTS):
                if fps[s] == 0:
                    fps[s] = fp
                    self.count += 1
                    return True
        i = rnd.choice((i1, self._alt(i1, fp)))
        for _ in range(MAX_KICKS):
            s = i * SLOTS + rnd.randrange(SLOTS)
            fp, fps[s] = fps[s], fp
            i = self._alt(i, fp)
            base = i * SLOTS
            for t in range(base, base + SLOTS):
                if fps[t] == 0:
                    fps[t] = fp
                    self.count += 1
                    return True
        self.count += 1  # the new key is in; the last kicked one is homeless
        return False


class CuckooFilter:
    """Set membership with false positives only, deletion, ~2 bytes per key."""

    def __init__(self, capacity: int = 1 << 16, seed: int = 0):
        buckets = 1
        while buckets * SLOTS < capacity / 0.95:
            buckets *= 2
        self.tables = [_Table(buckets)]
        self._rnd = random.Random(seed)
        self.dropped = 0  # fingerprints lost to a full table (forgotten far items)

    def _locate(self, key: bytes, table: _Table) -> tuple[int, int]:
        h = _hash(key)
        fp = (h >> 48) or 1  # 16 bits, never 0 (0 marks an empty slot)
        return h & table.mask, fp

    def __contains__(self, key: bytes) -> bool:
        h = _hash(key)
        fp = (h >> 48) or 1
        for t in self.tables:
            if t.count and t.find(h & t.mask, fp) >= 0:
                return True
        return False

    def add(self, key: bytes) -> None:
        """Remember that `key` may be far (adding twice stores it twice)."""
        t = self.tables[-1]
        i1, fp = self._locate(key, t)
        if t.insert(i1, fp, self._rnd):
            return
        # The table is full: one kicked fingerprint found no home and is lost
        # (its key reads as "not far": the cache forgets that one item, it
        # never serves a wrong one). New keys go to a table twice the size.
        self.dropped += 1
        t.count -= 1
        self.tables.append(_Table(t.buckets * 2))

    def discard(self, key: bytes) -> bool:
        """Forget one insertion of `key`; True if a matching fingerprint was found."""
        for t in reversed(self.tables):
            i1, fp = self._locate(key, t)
            s = t.find(i1, fp)
            if s >= 0:
                t.fps[s] = 0
                t.count -= 1
                return True
        return False

    def clear(self) -> None:
        """Forget everything (the far node lost its items)."""
        self.tables = [_Table(self.tables[0].buckets)]

    def __len__(self) -> int:
        return sum(t.count for t in self.tables)

    @property
    def nbytes(self) -> int:
        """Bytes of fingerprint storage."""
        return sum(len(t.fps) * 2 for t in self.tables)
