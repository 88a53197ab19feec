"""SlotIndex: key -> slot for resident items, with no Python object per item.

A dict of bytes keys to int slots costs ~120 B per item in CPython (the key
object, the int object, the dict entry); AIFM keeps its index in compact
arrays, and so does this:

    entries: array('I')  open addressing, linear probing, power-of-two size
             entry = slot + 1                  0 = empty

An entry's home is hash(key) & mask, Python's hash of the key. Neither the
key nor its hash is stored here: the owner reads a slot's key back from its
item (`key_at(slot)`) and hashes it (`hash_at(slot)`) when an entry must be
placed again (a removal's backward shift, a resize). A lookup compares keys
read from the items; RemHashTable's compiled probe first compares 8 bits of
the hash kept in the slot's metadata word (runtime.pointer's tag), so it
reads an item's key only on a likely match. Deletion shifts later entries
back (no tombstones), so probes stay short under churn. The table doubles
past a load of 3/4 (so 3/8-3/4 while growing: 5.3-10.7 B per key) and
halves below 1/16: a small heap's resident count swings by a whole segment's
items as the evacuator frees segments (with -m 4, between 3k and 16k), and a
shrink at 1/8 then met a grow at 3/4 every few thousand requests.

Compiled (kvcache/compiled.py): entries are read through a C pointer into
the array; RemHashTable probes them inline (hashtable.py `_find`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cython

from runtime.hugepages import zeroed_array

__all__ = ["Key", "SlotIndex", "home_of"]

_MIN = 1024  # smallest table (entries)
Key = bytes  # a key: bytes or a subclass (an alias: compiled code does not insist on exact bytes)
_U64 = (1 << 64) - 1


def home_of(h: cython.longlong, mask: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The home position of hash `h` (Python's hash, any sign) in a table of mask + 1."""
    if cython.compiled:
        return cython.cast(cython.Py_ssize_t, cython.cast(cython.ulonglong, h) & mask)
    return (h & _U64) & mask


class SlotIndex:
    """A hash index from keys to slots; keys live with the items, not here."""

    def __init__(
        self,
        key_at: Callable[[int], bytes | bytearray | memoryview],
        hash_at: Callable[[int], int],
    ):
        self.key_at = key_at  # slot -> the key of the item in that slot
        self.hash_at = hash_at  # slot -> hash() of that key
        self.entries = zeroed_array("I", _MIN)
        self.view = self.entries  # compiled: a C view of entries, made once per array
        self.mask = _MIN - 1
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def get(self, key: Key, default: int | None = None) -> int | None:
        """The slot of `key`, or `default`."""
        entries = self.entries
        mask = self.mask
        i = home_of(hash(key), mask)
        while True:
            e = entries[i]
            if not e:
                return default
            if self.key_at(e - 1) == key:
                return e - 1
            i = (i + 1) & mask

    def __contains__(self, key: Key) -> bool:
        return self.get(key) is not None

    def add(self, h: cython.longlong, slot: cython.Py_ssize_t) -> None:
        """Index `slot`, whose key hashes to `h` and is not indexed already."""
        if (self.count + 1) * 4 > len(self.entries) * 3:
            self._resize(len(self.entries) * 2)
        self._place(home_of(h, self.mask), slot)
        self.count += 1

    def _place(self, i: cython.Py_ssize_t, slot: cython.Py_ssize_t) -> cython.void:
        entries: cython.uint[::1] = self.view
        mask: cython.Py_ssize_t = self.mask
        while entries[i]:
            i = (i + 1) & mask
        entries[i] = slot + 1

    def remove_slot(self, slot: cython.Py_ssize_t, h: cython.longlong) -> cython.bint:
        """Unindex `slot`, whose key hashes to `h`; False if it was not indexed."""
        entries: cython.uint[::1] = self.view
        mask: cython.Py_ssize_t = self.mask
        want: cython.uint = slot + 1
        e: cython.uint
        i: cython.Py_ssize_t = home_of(h, mask)
        j: cython.Py_ssize_t
        home: cython.Py_ssize_t
        while True:
            e = entries[i]
            if not e:
                return False
            if e == want:
                break
            i = (i + 1) & mask
        # backward-shift deletion: pull later entries of the run into the hole
        j = i
        while True:
            j = (j + 1) & mask
            e = entries[j]
            if not e:
                break
            home = home_of(self.hash_of(e - 1), mask)
            if (j - home) & mask >= (j - i) & mask:  # home at or before the hole
                entries[i] = e
                i = j
        entries[i] = 0
        self.count -= 1
        size: cython.Py_ssize_t = len(self.entries)
        if size > _MIN and self.count * 16 < size:
            entries = None
            self._resize(size // 2)
        return True

    def _resize(self, size: cython.Py_ssize_t) -> cython.void:
        old = self.entries
        self.entries = zeroed_array("I", size)  # huge pages when >= 2 MiB
        self.view = self.entries
        self.mask = size - 1
        for e in old:
            if e:
                self._place(home_of(self.hash_of(e - 1), self.mask), e - 1)

    def hash_of(self, slot: cython.Py_ssize_t) -> cython.longlong:
        """hash() of the key in `slot`: `hash_at(slot)`; an owner's subclass may compute
        it without a call through Python (RemHashTable's index hashes the item in place)."""
        return self.hash_at(slot)

    def slots(self) -> list[int]:
        """Every indexed slot (a snapshot)."""
        return [e - 1 for e in self.entries if e]

    def __iter__(self) -> Iterator[Key]:
        """The indexed keys (read from their items), over a snapshot of slots."""
        for slot in self.slots():
            yield bytes(self.key_at(slot))

    def clear(self) -> None:
        """Unindex everything."""
        self.entries = zeroed_array("I", _MIN)
        self.view = self.entries  # compiled: a C view of entries, made once per array
        self.mask = _MIN - 1
        self.count = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the index array."""
        return self.entries.itemsize * len(self.entries)
