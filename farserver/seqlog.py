"""The write-order log a structure keeps for SCAN: stable cursors without scan state.

Every write to a structure (a hash-table set, append, incr, cas, touch; a
box or array store) gives the object the structure's next sequence number
(u64, from 1, never reused) and appends (seq, name) to the log. The object
keeps its seq (`Item.seq`, or the box/array's `seqs` dict), so an entry is
live iff its object still exists with that seq; removals, evictions,
expiry and rewrites only leave dead entries behind, and the log is
compacted (dead entries dropped, order kept) when it holds more than
2 x live + 1024 entries: amortized O(1) per removal.

    seqs   array('Q')   1  4  5  9  12 ...   ascending (appended in write order)
    names  list/array   k1 k7 k2 k1 k3 ...   k1@1 is dead: k1 now has seq 9

A cursor is a seq: "the objects whose last write has seq >= cursor", found
by bisection. A reply's next_cursor is the seq of the first entry it did not
look at (0 when it looked at the last one). Hence a full scan's guarantees
(protocol/far/bodies.py): an object that lives through the scan keeps its
seq until written; a write moves it ahead of every cursor (the new seq is
above all existing ones), so the scan meets it again later; reads and
eviction order never move it. Any u64 is a valid cursor. Nothing is kept per
scan, so scans are free to abandon, resume and run concurrently.

Per reply the node looks at no more than VISIT_LIMIT (16,384) entries, live
or dead, ~0.3-0.4 us each, so a reply holds the event loop ~5-7 ms at most
(plus copying its values), and returns at most MAX_BYTES of entries, which
fit the default 64 MiB + 1 KiB frame. A reply may so hold no entry at all
while next_cursor is not 0 (16,384 dead or expired entries in a row).
Limits: a first entry bigger than MAX_BYTES still comes alone, and a value
that filled a maximal WRITE frame makes a SCAN reply up to 16 bytes longer
than that frame limit (46 + name + value against READ's 28 + value), which a
reader with the same limit refuses.

Cost per live object, measured with farserver.memory.measure() on the dev
machine (CPython 3.11), charged through ITEM_OVERHEAD and INDEX_OVERHEAD:
a hash-table item +56 B (371 -> 428: 8 B in `seqs`, 8 B in `names`, a
reference to the key the table holds, 8 B for Item's seq slot, 32 B for its
int); a box/array object +101 B (109 -> 210: the `seqs` dict entry and its
int, 16 B of log; names are raw u64s). Dead entries cost 16 B each (plus, in
a hash table, the key object a rewrite replaced) until compaction, at most
as many as live objects plus SLACK; they are not charged. Writes append
(O(1)); a scan reply costs O(log n) to find its cursor plus O(entries
looked at). Measured on the dev machine (2 cores, shared, so +-30%):
a hash-table WRITE's store step costs ~1.05 us for a new key (0.73 before),
~0.87 us for a rewrite (0.49 before: the log entry, and re-inserting the key
so the dict and the log share one key object).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable
from typing import Any

from protocol.far import SCAN_ENTRY_SIZE

__all__ = ["MAX_BYTES", "SLACK", "VISIT_LIMIT", "Entry", "SeqLog"]

VISIT_LIMIT = 1 << 14  # log entries one SCAN reply looks at, at most (~0.3-0.4 us each)
MAX_BYTES = 64 * 1024 * 1024  # bytes of entries one SCAN reply holds at most (clamps max_bytes)
SLACK = 1024  # dead entries tolerated beyond as many as there are live objects

Entry = tuple[bytes, int, int, int, bytes]  # name, flags, exptime, cas, value: the wire's
Name = Any  # a name as the structure keys it: bytes (hash table) or int (box, array)


class SeqLog:
    """(seq, name) of every write, in seq order; dead entries dropped from time to time."""

    __slots__ = ("next_seq", "seqs", "names")

    def __init__(self, int_names: bool):
        self.next_seq = 1  # the seq the next write gets; never reused
        self.seqs = array("Q")  # ascending
        self.names: list | array = array("Q") if int_names else []  # parallel to seqs

    def __len__(self) -> int:
        return len(self.seqs)

    def add(self, name: Name) -> int:
        """Log a write of `name`; returns its new seq."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self.seqs.append(seq)
        self.names.append(name)
        return seq

    def clear(self) -> None:
        """Forget every entry (the structure is empty); seqs keep counting up."""
        self.seqs = array("Q")
        self.names = array("Q") if isinstance(self.names, array) else []

    def compact(self, is_live: Callable[[int, Name], bool]) -> None:
        """Drop dead entries, keeping order. Owners call it once len(seqs) > 2 x their
        object count + SLACK (checked inline: this runs on every write and removal)."""
        seqs = array("Q")
        names = array("Q") if isinstance(self.names, array) else []
        for seq, name in zip(self.seqs, self.names, strict=True):
            if is_live(seq, name):
                seqs.append(seq)
                names.append(name)
        self.seqs = seqs
        self.names = names

    def scan(
        self,
        cursor: int,
        max_items: int,
        max_bytes: int,
        entry_of: Callable[[int, Name], Entry | None],
    ) -> tuple[int, list[Entry]]:
        """(next_cursor, entries) from `cursor` on: entry_of(seq, name) is an entry's wire
        form, None if it is dead or expired. Stops before max_items + 1 entries, before
        max_bytes (clamped to MAX_BYTES) is passed unless the entry is the first, and after
        VISIT_LIMIT entries looked at."""
        seqs = self.seqs
        names = self.names
        end = len(seqs)
        pos = bisect.bisect_left(seqs, cursor)
        stop = min(end, pos + VISIT_LIMIT)
        max_bytes = min(max_bytes, MAX_BYTES)
        out: list[Entry] = []
        count = size = 0
        while pos < stop:
            entry = entry_of(seqs[pos], names[pos])
            if entry is not None:
                cost = SCAN_ENTRY_SIZE + len(entry[0]) + len(entry[4])
                if count == max_items or (count and size + cost > max_bytes):
                    break
                out.append(entry)
                count += 1
                size += cost
            pos += 1
        return (seqs[pos] if pos < end else 0), out
