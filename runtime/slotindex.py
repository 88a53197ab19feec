"""SlotIndex: key -> slot for resident items, with no Python object per item.

A dict of bytes keys to int slots costs ~120 B per item in CPython (the key
object, the int object, the dict entry); AIFM keeps its index in compact
arrays, and so does this:

    entries: array('Q')  open addressing, linear probing, power-of-two size
             entry = (slot + 1) << 32 | h32       0 = empty
    hashes:  array('I')  slot -> h32, to find a slot's entry without its key

h32 is the low 32 bits of Python's hash of the key; the key itself is not
stored here but read back from the item (the owner's `key_at(slot)`), so a
lookup compares 32-bit tags first and reads one key per match (a false tag
match costs one extra key read, at ~n / 2^32 per probe). Deletion shifts
later entries back (no tombstones), so probes stay short under churn. The
table doubles past a load of 2/3 (so 1/3-2/3 while growing: 12-24 B per key
for entries, plus 4 for hashes) and halves below 1/8.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator

__all__ = ["SlotIndex"]

_M32 = 0xFFFFFFFF
_MIN = 1024  # smallest table (entries)


class SlotIndex:
    """A hash index from keys to slots; keys live with the items, not here."""

    __slots__ = ("entries", "mask", "count", "hashes", "key_at")

    def __init__(self, key_at: Callable[[int], bytes | bytearray | memoryview]):
        self.key_at = key_at  # slot -> the key of the item in that slot
        self.entries = array("Q", bytes(8 * _MIN))
        self.mask = _MIN - 1
        self.count = 0
        self.hashes = array("I")  # slot -> h32 (grown as slots are)

    def __len__(self) -> int:
        return self.count

    def get(self, key: bytes, default: int | None = None) -> int | None:
        """The slot of `key`, or `default`."""
        h = hash(key) & _M32
        entries = self.entries
        mask = self.mask
        i = h & mask
        while True:
            e = entries[i]
            if not e:
                return default
            if e & _M32 == h:
                slot = (e >> 32) - 1
                if self.key_at(slot) == key:
                    return slot
            i = (i + 1) & mask

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def add(self, key: bytes, slot: int) -> None:
        """Index `slot` under `key`, which must not be indexed already."""
        h = hash(key) & _M32
        hashes = self.hashes
        while len(hashes) <= slot:
            hashes.append(0)
        hashes[slot] = h
        if (self.count + 1) * 3 > len(self.entries) * 2:
            self._resize(len(self.entries) * 2)
        self._place((slot + 1) << 32 | h)
        self.count += 1

    def _place(self, entry: int) -> None:
        entries = self.entries
        mask = self.mask
        i = entry & _M32 & mask
        while entries[i]:
            i = (i + 1) & mask
        entries[i] = entry

    def remove_slot(self, slot: int) -> bool:
        """Unindex `slot`; False if it was not indexed."""
        if slot >= len(self.hashes):
            return False
        h = self.hashes[slot]
        want = (slot + 1) << 32 | h
        entries = self.entries
        mask = self.mask
        i = h & mask
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
            home = e & _M32 & mask
            if (j - home) & mask >= (j - i) & mask:  # home at or before the hole
                entries[i] = e
                i = j
        entries[i] = 0
        self.count -= 1
        size = len(entries)
        if size > _MIN and self.count * 8 < size:
            self._resize(size // 2)
        return True

    def _resize(self, size: int) -> None:
        old = self.entries
        self.entries = array("Q", bytes(8 * size))
        self.mask = size - 1
        for e in old:
            if e:
                self._place(e)

    def slots(self) -> list[int]:
        """Every indexed slot (a snapshot)."""
        return [(e >> 32) - 1 for e in self.entries if e]

    def __iter__(self) -> Iterator[bytes]:
        """The indexed keys (read from their items), over a snapshot of slots."""
        for slot in self.slots():
            yield bytes(self.key_at(slot))

    def clear(self) -> None:
        """Unindex everything."""
        self.entries = array("Q", bytes(8 * _MIN))
        self.mask = _MIN - 1
        self.count = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return self.entries.itemsize * len(self.entries) + self.hashes.itemsize * len(self.hashes)
