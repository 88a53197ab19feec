"""DerefScope: pins what a green thread is using (AIFM's DerefScope).

    with DerefScope() as scope:
        view = array.at(scope, i)     # view stays valid until the block exits
        ... may park here: legal ...

Every object dereferenced through a scope has its segment pinned (a counter
per segment) until the scope exits: the evacuator neither moves nor frees a
pinned segment's bytes; it skips pinned segments instead of waiting for them,
and a segment it finished with while pinned is freed at its last unpin. A
memoryview handed to a transport must come from inside a scope. Pinning costs
one increment and one list append. Compiled, DerefScope is a C class (scope.pxd).
"""

from __future__ import annotations

from runtime.heap import Segment

__all__ = ["DerefScope"]


class DerefScope:
    """A block during which dereferenced objects stay put in local memory."""

    def __init__(self) -> None:
        self._pins: list[Segment] = []  # one entry per pin taken

    def pin(self, seg: Segment) -> None:
        """Keep `seg` in place until this scope exits."""
        seg.pins += 1
        self._pins.append(seg)

    @property
    def pinned(self) -> int:
        """Pins taken so far (one per object dereferenced)."""
        return len(self._pins)

    def release(self) -> None:
        """Drop every pin taken so far (the scope may be reused after)."""
        pins, self._pins = self._pins, []
        for seg in pins:
            if seg.pins > 1:
                seg.pins -= 1  # not the last pin: nothing can be freed yet
            else:
                seg.heap.unpin(seg)

    def __enter__(self) -> DerefScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
