"""Stride prefetching for RemArray (AIFM's prefetcher).

The detector watches the indices a RemArray is dereferenced at. After 8
consecutive accesses with the same non-zero stride it predicts a window of
the next `window` indices along that stride; the array fetches the ones
that are far, asynchronously (the caller never waits for a prefetch).
A stride change resets the count. Prefetched elements arrive clean.
"""

from __future__ import annotations

__all__ = ["StrideDetector"]

TRIGGER = 8  # equal strides in a row before prefetching starts


class StrideDetector:
    """Detects constant-stride access and predicts the next indices."""

    __slots__ = ("last", "stride", "run", "window", "ahead")

    def __init__(self, window: int = 16):
        self.window = window  # indices predicted ahead of the current one
        self.last = -1  # previous index
        self.stride = 0  # current stride
        self.run = 0  # accesses in a row with this stride
        self.ahead: int | None = None  # furthest index already predicted

    def record(self, index: int) -> range | None:
        """Note an access; the indices to prefetch now (possibly out of bounds), or None."""
        stride = index - self.last
        self.last = index
        if stride == 0:
            return None
        if stride != self.stride:
            self.stride = stride
            self.run = 1
            self.ahead = None
            return None
        self.run += 1
        if self.run < TRIGGER:
            return None
        target = index + stride * self.window
        nxt = index + stride if self.ahead is None else self.ahead + stride
        if (nxt - index) * stride <= 0:  # fell behind the reader: restart at it
            nxt = index + stride
        if (target - nxt) * stride < 0:
            return None  # the window is already predicted
        self.ahead = target
        return range(nxt, target + (1 if stride > 0 else -1), stride)
