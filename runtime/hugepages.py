"""Transparent huge pages for the runtime's big arrays and its heap.

A table of a million resident items reads three regions of megabytes at
random on every lookup: the index entries, the metadata words and the items
in the heap. With 4 KiB pages each of those loads can miss the TLB as well as
the cache; 2 MiB pages cover the lot with a few hundred TLB entries. Linux
backs an anonymous range with 2 MiB pages when THP is `always`, or when it is
`madvise` (Debian's default) and the range was advised MADV_HUGEPAGE before
its pages were first touched; pages touched before are only collapsed later,
slowly, by khugepaged.

    zeroed_array(code, n)   a zeroed array; one of 2 MiB or more is advised
                            before it is zeroed (compiled: clone, madvise,
                            memset), so its pages fault in huge
    advise_array(a)         advise an array's buffer in place: the word array
                            as it grows (glibc grows a big block by mremap,
                            which keeps the advice for the part not yet used)
    Arena                   the heap's segments: slices of private anonymous mmaps of
                            whole 2 MiB multiples, advised when mapped

Only placement changes: where THP is `never` or madvise fails, memory stays
in 4 KiB pages and every value is the same. The pure build advises through
ctypes (advise_array) and mmap.madvise (Arena); its zeroed_array zeroes
first, so only khugepaged may collapse those.
"""

from __future__ import annotations

import mmap
from array import array

import cython

if cython.compiled:
    from cython.cimports.cpython.array import array as c_array
    from cython.cimports.cpython.array import clone
    from cython.cimports.libc.string import memset
    from cython.cimports.posix.mman import MADV_HUGEPAGE, madvise

__all__ = ["HUGE_PAGE", "Arena", "advise_array", "thp_mode", "zeroed_array"]

HUGE_PAGE = 2 << 20  # x86-64's PMD size; smaller ranges are never advised
_PAGE = 4096
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only
_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
_libc_madvise = None  # pure build: libc's madvise through ctypes, looked up once


def thp_mode() -> str:
    """The kernel's THP mode: 'always', 'madvise', 'never', or '' where unknown."""
    try:
        with open(_THP_ENABLED, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else ""


@cython.cfunc
def _advise_range(address: cython.size_t, size: cython.size_t) -> cython.bint:
    """madvise(MADV_HUGEPAGE) over the whole pages inside [address, address + size)."""
    lo: cython.size_t = (address + _PAGE - 1) & ~cython.cast(cython.size_t, _PAGE - 1)
    hi: cython.size_t = (address + size) & ~cython.cast(cython.size_t, _PAGE - 1)
    if size < HUGE_PAGE or hi <= lo:
        return False
    if cython.compiled:
        return madvise(cython.cast(cython.p_void, lo), hi - lo, MADV_HUGEPAGE) == 0
    global _libc_madvise
    if _MADV_HUGEPAGE is None:
        return False
    if _libc_madvise is None:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        fn.restype = ctypes.c_int
        _libc_madvise = fn
    return _libc_madvise(lo, hi - lo, _MADV_HUGEPAGE) == 0


def advise_array(a: array) -> bool:
    """Ask for huge pages over array `a`'s buffer (2 MiB or more); False if not advised."""
    address, n = a.buffer_info()
    return _advise_range(address, n * a.itemsize)


def zeroed_array(typecode: str, n: cython.Py_ssize_t) -> array:
    """A new array of `n` zeros; its buffer advised for huge pages before it is zeroed."""
    if cython.compiled:
        template: c_array = array(typecode)
        a: c_array = clone(template, n, False)  # uninitialised: no page touched yet
        size: cython.size_t = n * a.ob_descr.itemsize
        _advise_range(cython.cast(cython.size_t, a.data.as_voidptr), size)
        memset(a.data.as_voidptr, 0, size)
        return a
    a = array(typecode, bytes(n * array(typecode).itemsize))
    advise_array(a)
    return a


class Arena:
    """Fixed-size blocks (heap segments) cut from private anonymous mmaps, advised for huge pages.

    Each map is a whole number of blocks and, where a block is 2 MiB or less,
    at least 2 MiB (16 MiB once the arena has grown past one map), so the
    kernel can place it on a 2 MiB boundary. A block given back is reused
    first; the pages stay mapped (as memcached keeps its slabs), and a map is
    unmapped only when the arena and every view of it are gone.
    """

    def __init__(self, block: int):
        if block <= 0:
            raise ValueError("block size must be positive")
        self.block = block
        self.maps: list[mmap.mmap] = []
        self._views: list[memoryview] = []  # one writable view per map, sliced into blocks
        self._free: list[memoryview] = []  # blocks given back, reused first (LIFO)
        self._next = 0  # next unused block of the newest map
        self._per = 0  # blocks in the newest map
        self.advised = 0  # maps madvise accepted

    def _grow(self) -> None:
        per = max(1, HUGE_PAGE // self.block)
        if self.maps:
            per = max(per, (8 * HUGE_PAGE) // self.block)
        # private: a shared anonymous map is shmem, which THP backs only where
        # shmem_enabled allows it (`never` by default), and a fork would share it
        m = mmap.mmap(-1, per * self.block, flags=mmap.MAP_PRIVATE)
        if _MADV_HUGEPAGE is not None and len(m) >= HUGE_PAGE:
            try:
                m.madvise(_MADV_HUGEPAGE)
                self.advised += 1
            except OSError:
                pass  # THP unsupported here: 4 KiB pages, same values
        self.maps.append(m)
        self._views.append(memoryview(m))
        self._next = 0
        self._per = per

    def take(self) -> memoryview:
        """A writable block: a given-back one, else a new one (zeros)."""
        if self._free:
            return self._free.pop()
        if self._next == self._per:
            self._grow()
        start = self._next * self.block
        self._next += 1
        return self._views[-1][start : start + self.block]

    def give(self, buf: memoryview) -> None:
        """Take back a block from take(): the next take() reuses it (its bytes as they are)."""
        self._free.append(buf)

    @property
    def mapped_bytes(self) -> int:
        """Bytes of address space mapped (resident or not)."""
        return sum(len(m) for m in self.maps)
