"""A cuckoo filter: which keys may be far, in under 2 bytes per key.

The remoteable hash table keeps only resident items in its index; keys whose
items live only on the far node are remembered here, so that a miss on a key
that was never stored costs no far round trip (DESIGN §6). Unlike a Bloom
filter it supports deletion (a key set again locally, deleted, or found gone
on the far node leaves the filter), so it does not silt up under churn.

    bucket: one 64-bit word, 5 lanes of 12-bit fingerprints (0 = empty)
            [ 4 unused | fp4 | fp3 | fp2 | fp1 | fp0 ]
    i1 = h mod B,  i2 = (c(fp) - i1) mod B        (an involution for any B)

A bucket is tested for a fingerprint in a few big-int operations (the SWAR
"has a zero lane" test on word xor fp*0x001001001001001), not lane by lane.

False positives: at most 10 / 4095 per lookup (~0.24%), i.e. >= 99.7% of
misses on never-stored keys are answered locally. B is sized exactly (not a
power of two) for the capacity at 95% load; when an insert fails after 500
kicks, a new table of twice the size is chained (lookups ask each).
Memory: 8 bytes per 5 slots = 1.6 bytes per slot, ~1.7 bytes per key at 95%.
Deleting a key that was never inserted may delete another key's matching
fingerprint: callers delete only keys they inserted.
"""

from __future__ import annotations

import random

import cython

from runtime.hugepages import zeroed_array

__all__ = ["CuckooFilter"]

SLOTS = 5  # fingerprints per bucket
FP_BITS = 12
LANE = (1 << FP_BITS) - 1
REP = sum(1 << (FP_BITS * k) for k in range(SLOTS))  # 1 in every lane
HIGH = REP << (FP_BITS - 1)  # every lane's top bit
MAX_LOAD = 0.95
MAX_KICKS = 500
REP_C = cython.declare(cython.ulonglong, REP)  # as C constants when compiled
HIGH_C = cython.declare(cython.ulonglong, HIGH)


def _hash(key: object) -> cython.ulonglong:
    # Python's own (SipHash) hash of the key, made unsigned: cached on the key
    # object, so the index probe and the filter test of one request hash once.
    # Its seed is per process, and so is the filter (it is never persisted).
    if cython.compiled:
        return cython.cast(cython.ulonglong, cython.cast(cython.longlong, hash(key)))
    return hash(key) & 0xFFFF_FFFF_FFFF_FFFF


def _has(word: cython.ulonglong, fp: cython.ulonglong) -> cython.bint:
    """True if some lane of `word` holds `fp` (fp 0: some lane is empty)."""
    x: cython.ulonglong = word ^ (fp * REP_C)
    if cython.compiled:
        return ((x - REP_C) & ~x & HIGH_C) != 0
    return bool(((x - REP) & ~x & HIGH) & 0xFFFF_FFFF_FFFF_FFFF)


def _lane_of(word: cython.ulonglong, fp: cython.ulonglong) -> cython.int:
    """The first lane of `word` holding `fp` (the caller knows there is one)."""
    s: cython.int
    for s in range(SLOTS):
        if (word >> (FP_BITS * s)) & LANE == fp:
            return s
    raise AssertionError("no lane holds the fingerprint")


class _Table:
    """One table of buckets (a C class when compiled)."""

    def __init__(self, buckets: int):
        self.buckets = buckets  # any count >= 1
        self.words = zeroed_array("Q", buckets)  # one bucket per word, 0 = all empty
        self.count = 0

    def alt(self, i: cython.longlong, fp: cython.longlong) -> cython.longlong:
        """The other bucket of a fingerprint in bucket i."""
        return (fp * 0x5BD1E995 - i) % self.buckets

    def _w(self, i: cython.longlong) -> cython.ulonglong:
        if cython.compiled:
            return self.words.data.as_ulonglongs[i]
        return self.words[i]

    def find(self, i1: cython.longlong, fp: cython.ulonglong) -> cython.longlong:
        """The bucket holding fp (i1 or its alternate), or -1."""
        if _has(self._w(i1), fp):
            return i1
        i2: cython.longlong = self.alt(i1, fp)
        if _has(self._w(i2), fp):
            return i2
        return -1

    def remove(self, i: cython.longlong, fp: cython.ulonglong) -> None:
        """Empty one lane of bucket i holding fp."""
        w: cython.ulonglong = self._w(i)
        self.words[i] = w & ~(LANE << (FP_BITS * _lane_of(w, fp))) & 0xFFFF_FFFF_FFFF_FFFF
        self.count -= 1

    def _put(self, i: cython.longlong, fp: cython.ulonglong) -> cython.bint:
        w: cython.ulonglong = self._w(i)
        if not _has(w, 0):
            return False
        self.words[i] = w | (fp << (FP_BITS * _lane_of(w, 0)))
        return True

    def insert(self, i1: int, fp: int, rnd: random.Random) -> bool:
        """Store fp in one of its buckets, kicking others along; False if one is lost."""
        self.count += 1
        if self._put(i1, fp) or self._put(self.alt(i1, fp), fp):
            return True
        words = self.words
        i = rnd.choice((i1, self.alt(i1, fp)))
        for _ in range(MAX_KICKS):
            shift = FP_BITS * rnd.randrange(SLOTS)
            w = words[i]
            fp, words[i] = (w >> shift) & LANE, (w & ~(LANE << shift)) | (fp << shift)
            i = self.alt(i, fp)
            if self._put(i, fp):
                return True
        return False  # the new key is in; the last kicked one is homeless


class CuckooFilter:
    """Set membership with false positives only, deletion, ~1.7 bytes per key."""

    def __init__(self, capacity: int = 1 << 16, seed: int = 0):
        self.tables = [_Table(max(1, -(-int(capacity / MAX_LOAD) // SLOTS)))]
        self._rnd = random.Random(seed)
        self.dropped = 0  # fingerprints lost to a full table (forgotten far items)

    @staticmethod
    def _locate(key: object, table: _Table) -> tuple[int, int]:
        h = _hash(key)
        return h % table.buckets, ((h >> 48) & LANE) or 1  # fp never 0 (0 = empty)

    def __contains__(self, key: object) -> bool:
        h: cython.ulonglong = _hash(key)
        fp: cython.ulonglong = ((h >> 48) & LANE) or 1
        t: _Table
        for t in self.tables:
            if t.count and t.find(h % t.buckets, fp) >= 0:
                return True
        return False

    def add(self, key: object) -> None:
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

    def discard(self, key: object) -> bool:
        """Forget one insertion of `key`; True if a matching fingerprint was found."""
        for t in reversed(self.tables):
            i1, fp = self._locate(key, t)
            i = t.find(i1, fp)
            if i >= 0:
                t.remove(i, fp)
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
        return sum(8 * t.buckets for t in self.tables)
