# cython: annotation_typing=False
"""The far-memory manager (AIFM's FarMemManager): one heap, one evacuator and
an optional far client, shared by every data structure of a process.

Allocation is where mutators meet the evacuator:

    alloc(): heap.alloc -> ok
             no room (free segments at the 3% park mark) -> wake the evacuator,
             park until segments are freed; OutOfMemory after `alloc_timeout`;
             from the hub: WouldPark (before any side effect)
             each freed segment wakes one parked allocation, and each woken
             allocation that succeeds wakes the next (while room lasts)

`try_alloc()` never parks (for loop callbacks such as prefetch completions).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from runtime import hub as _hub
from runtime.errors import OutOfMemory
from runtime.evacuator import Evacuator
from runtime.farclient import FarClient
from runtime.heap import SEGMENT_SIZE, Heap

__all__ = ["Manager"]


class Manager:
    """Local heap + evacuator + far client: the runtime data structures use."""

    def __init__(
        self,
        heap_bytes: int,
        far: FarClient | None = None,
        *,
        hub: _hub.Hub | None = None,
        segment_size: int = SEGMENT_SIZE,
        start_free: float = 0.12,
        stop_free: float = 0.22,
        park_free: float = 0.03,
        alloc_timeout: float = 10.0,
        slice_seconds: float = 100e-6,
    ):
        self.hub = hub or _hub.get_hub()
        self.heap = Heap(heap_bytes, segment_size, start_free, stop_free, park_free)
        self.far = far
        self.alloc_timeout = alloc_timeout  # seconds an allocation may wait for space
        self.evacuator = Evacuator(self, slice_seconds)
        self.heap.on_low_memory = self.evacuator.wake
        self.heap.on_space = self._space_freed
        self._space_waiters: deque[_hub.Waiter] = deque()
        self.structures: list[Any] = []
        # stats shared by the data structures
        self.counters = {
            "far_reads": 0,
            "far_read_bytes": 0,
            "far_writes": 0,
            "far_recopies": 0,  # far-only objects re-replicated (read, then written)
            "nt_reads": 0,
            "prefetches": 0,
            "prefetch_hits": 0,
            "offloads": 0,
            "alloc_waits": 0,
        }

    def start(self) -> None:
        """Start the evacuator and begin connecting to the far node."""
        self.evacuator.start()
        if self.far is not None:
            self.far.start()

    def close(self) -> None:
        """Stop the evacuator and the far client."""
        self.evacuator.stop()
        if self.far is not None:
            self.far.close()

    def resize(self, heap_bytes: int) -> None:
        """Change the local heap's budget at run time; see Heap.resize. Never parks."""
        self.heap.resize(heap_bytes)

    def register(self, structure: Any) -> int:
        """Register a data structure's objects with the heap; its owner id."""
        self.structures.append(structure)
        return self.heap.register(structure)

    # -- allocation ----------------------------------------------------------

    def try_alloc(self, size: int, owner: int, slot: int) -> tuple[int, int] | None:
        """(segment, offset) for a payload of `size` bytes, or None. Never parks."""
        return self.heap.alloc(size, owner, slot)

    def alloc(self, size: int, owner: int, slot: int) -> tuple[int, int]:
        """(segment, offset) for a payload of `size` bytes. May park.

        Raises WouldPark from the hub when no room is free (nothing changed),
        OutOfMemory when nothing was freed within alloc_timeout.
        """
        loc = self.heap.alloc(size, owner, slot)
        if loc is not None:
            return loc
        _hub.check_can_park()
        self.counters["alloc_waits"] += 1
        while True:
            self.evacuator.wake()
            w = _hub.Waiter(self.hub)
            self._space_waiters.append(w)
            try:
                w.get(self.alloc_timeout, OutOfMemory("no local memory freed in time"))
            finally:
                try:
                    self._space_waiters.remove(w)
                except ValueError:
                    pass
            loc = self.heap.alloc(size, owner, slot)
            if loc is not None:
                self._space_freed()  # pass the wake-up on: a freed segment fits many objects
                return loc

    def _space_freed(self) -> None:
        if self._space_waiters and self.heap.free_units > self.heap.park_at:
            w = self._space_waiters.popleft()
            self.hub.schedule(w.switch, None)

    def stats(self) -> dict[str, Any]:
        """Heap, evacuator, far-client and data-structure counters, one dict."""
        out: dict[str, Any] = {}
        out.update(self.heap.stats())
        out.update(self.evacuator.stats())
        out.update(self.counters)
        if self.far is not None:
            out.update(self.far.stats())
        return out
