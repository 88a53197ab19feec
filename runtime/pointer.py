"""The 64-bit metadata word per object, modelled on AIFM's remoteable pointer.

Words live in compact `array('Q')`s owned by each data structure, one word per
object (never one Python object per object). Layout:

     63  62  61  60  59 ...... 52  51 ..... 44  43 ................................ 0
    +---+---+---+---+-------------+-----------+------------------------------------+
    | P | D | E | F | hotness (8) |  tag (8)  | P=1: segment (20)  | offset (24)   |
    |   |   |   |   |             |           | P=0: far object id (44)            |
    +---+---+---+---+-------------+-----------+------------------------------------+
    P present  the object's bytes are in the local heap at (segment, offset)
    D dirty    the local copy differs from the far copy (or there is none)
    E evacuating  a write-back is in flight; a mutator clears it and moves on
    F far      the far node holds a valid copy (clean objects can be dropped)
    tag        the owner's: RemHashTable keeps 8 bits of the key's hash there,
               so an index probe skips most wrong slots without reading items

A word of 0 is "never materialized": no local copy, no far copy (reads as
zeros for arrays). Hotness is a byte: a deref raises it to HOT_DEREF (3),
writing the word only if it had cooled below that, so re-reading a hot
object stores nothing; the evacuator halves it (CLOCK: an object kept gets
one more pass, then cools: 3 -> 1 -> 0).
"""

from __future__ import annotations

import cython

__all__ = [
    "DIRTY",
    "EVACUATING",
    "FAR",
    "HOT_DEREF",
    "HOT_MASK",
    "HOT_MAX",
    "HOT_SHIFT",
    "LOC_MASK",
    "OFF_MASK",
    "PRESENT",
    "SEG_MAX",
    "SEG_SHIFT",
    "TAG_MASK",
    "TAG_SHIFT",
    "far_word",
    "hotness",
    "local_word",
    "offset_of",
    "segment_of",
    "with_hotness",
]

PRESENT = 1 << 63
DIRTY = 1 << 62
EVACUATING = 1 << 61
FAR = 1 << 60
HOT_SHIFT = 52
HOT_MAX = 0xFF
HOT_DEREF = 3  # a deref sets hotness to at least this: it survives 2 evacuator passes
HOT_MASK = HOT_MAX << HOT_SHIFT
TAG_SHIFT = 44
TAG_MASK = 0xFF << TAG_SHIFT
LOC_MASK = (1 << 44) - 1  # segment+offset, or far id
SEG_SHIFT = 24
OFF_MASK = (1 << 24) - 1
SEG_MAX = (1 << 20) - 1
FLAG_MASK = DIRTY | EVACUATING | FAR
# the same as C constants when compiled (module globals are looked up by name)
PRESENT_C = cython.declare(cython.ulonglong, PRESENT)
FAR_C = cython.declare(cython.ulonglong, FAR)
HOT_SHIFT_C = cython.declare(cython.int, HOT_SHIFT)
SEG_SHIFT_C = cython.declare(cython.int, SEG_SHIFT)
SEG_MAX_C = cython.declare(cython.ulonglong, SEG_MAX)
OFF_MASK_C = cython.declare(cython.ulonglong, OFF_MASK)
LOC_MASK_C = cython.declare(cython.ulonglong, LOC_MASK)


def local_word(
    segment: cython.ulonglong,
    offset: cython.ulonglong,
    flags: cython.ulonglong = 0,
    hot: cython.ulonglong = 1,
) -> cython.ulonglong:
    """A present word at (segment, offset) with `flags` (DIRTY/FAR, a tag) and hotness."""
    return PRESENT_C | flags | (hot << HOT_SHIFT_C) | (segment << SEG_SHIFT_C) | offset


def far_word(far_id: cython.ulonglong, hot: cython.ulonglong = 0) -> cython.ulonglong:
    """A word for an object held only by the far node under `far_id`."""
    return FAR_C | (hot << HOT_SHIFT_C) | (far_id & LOC_MASK_C)


def segment_of(word: cython.ulonglong) -> cython.ulonglong:
    """The segment of a present word."""
    return (word >> SEG_SHIFT_C) & SEG_MAX_C


def offset_of(word: cython.ulonglong) -> cython.ulonglong:
    """The offset of a present word within its segment."""
    return word & OFF_MASK_C


def hotness(word: cython.ulonglong) -> cython.ulonglong:
    """The hotness byte."""
    return (word >> HOT_SHIFT_C) & HOT_MAX


def with_hotness(word: int, hot: int) -> int:
    """`word` with its hotness replaced (clamped to 0..255)."""
    hot = 0 if hot < 0 else HOT_MAX if hot > HOT_MAX else hot
    return (word & ~HOT_MASK) | (hot << HOT_SHIFT)
