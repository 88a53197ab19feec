"""The web frontend over three memory systems, and the one harness that drives them.

    request r:  keys_of(r) --32 lookups, one DerefScope--> sum --% n_elems--> i
                array[i] (non-temporal) --AES-128-CBC--> --Snappy--> reply

Backends (same data, same request, same compute; only the memory differs):

    local   a dict key -> value and one bytearray of elements: the ideal
    far     runtime.RemHashTable (subclassed here: 32 values summed per call,
            bulk loading) and a RemArray, a bounded heap, a far node in its own
            process; the array is read non-temporally (never cached), so the
            local budget goes to the table
    paging  paging.py: the data in 4 KiB pages, a CLOCK page cache, faults
            that block the process (the Fastswap-like baseline)

The harness runs `threads` green threads on one hub, each issuing requests
back to back from one shared Zipf(0.85) stream and yielding to the hub after
each (the same switch in every mode): warm-up, then a measured window.

Local memory (the x-axis) is measured, never assumed, once the window ends:
    far     heap segment bytes at their peak (Heap.peak_used_bytes) + the
            table's index (RemHashTable.index_bytes: sys.getsizeof of the
            SlotIndex arrays, the word array, the free-slot list and its
            ints) + the cuckoo filter's arrays + the array's word array
    paging  sys.getsizeof of the frame bytearray, page table and the
            per-frame arrays (page, reference bit, dirty bit)
    local   sys.getsizeof of the dict, every key and value int, the element
            bytearray
The far heap is the largest whose resident items' index still fits the target
beside it (`heap_bytes_for`: the index's real arrays, `index_bytes_for`), so
points land near the nominal percentage; the CSV and the plot use the
measured value.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import zlib
from collections.abc import Callable
from struct import Struct
from typing import Any

from loadtest.webfrontend.data import (
    ELEM_SIZE,
    KEY_SIZE,
    KEYS_PER_REQUEST,
    VALUE_SIZE,
    Dataset,
    Responder,
)
from loadtest.webfrontend.paging import (
    PAGE,
    BlockingFar,
    PagedArray,
    PagedHashTable,
    PagedMemory,
    slots_for,
)
from protocol.far import Op, Status, encode_index, encode_write
from runtime import hub as H
from runtime.cuckoo import CuckooFilter
from runtime.errors import FarDataLost, FarTimeout
from runtime.farclient import FarClient
from runtime.farprocess import FarProcess
from runtime.hashtable import ITEM_HEADER, RemHashTable
from runtime.heap import HEADER_SIZE as OBJECT_HEADER_SIZE
from runtime.heap import align
from runtime.manager import Manager
from runtime.pointer import PRESENT, far_word
from runtime.scope import DerefScope
from runtime.structures import RemArray

__all__ = [
    "BACKENDS",
    "FarBackend",
    "LocalBackend",
    "PagingBackend",
    "WebTable",
    "run_point",
]

MiB = 1 << 20
# A resident item in the heap: the object header, the item header, key and value, 8-aligned.
HEAP_ITEM_BYTES = align(OBJECT_HEADER_SIZE + ITEM_HEADER.size + KEY_SIZE + VALUE_SIZE)
MIN_HEAP = 256 * 1024


def index_bytes_for(n: int) -> int:
    """Local bytes of a RemHashTable index over n resident items, as index_bytes measures it.

    One 8-byte word per slot and runtime.slotindex's entries: 4 bytes each,
    a power of two from 1024, doubled past a load of 3/4. Both are arrays,
    which CPython over-allocates by up to ~1/16. A flat per-item
    estimate (28 B) left every far point 15-20% under its nominal local
    memory, the 25% point at 20%, and that budget went unused: the steps of
    the entries array are what decide whether the table fits.
    """
    entries = 1024
    while n * 4 > entries * 3:
        entries *= 2
    return (8 * n + 4 * entries) * 17 // 16 + 256  # + the two arrays' headers


def heap_bytes_for(budget: int, n_keys: int) -> int:
    """The largest heap that fits `budget` with the index of the items it can hold."""
    lo, hi = 0, max(0, budget)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid + index_bytes_for(min(n_keys, mid // HEAP_ITEM_BYTES)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def segment_size_for(heap: int, threads: int = 64) -> int:
    """AIFM's 1 MiB segments, smaller (down to 16 KiB) so a heap has >= 4 x threads.

    A green thread parked in an allocation keeps the segments of the items it
    admitted just before pinned; with 64 of them and a few dozen segments,
    every sealed segment can be pinned and the evacuator can free nothing.
    """
    seg = 1 << 20
    while seg > 16 * 1024 and heap // seg < 4 * threads:
        seg //= 2
    return seg


_U32 = Struct("<I")
_U32_REQUEST = Struct(f"<{KEYS_PER_REQUEST}I")  # a request's values, when all are resident

Progress = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# -- far mode -------------------------------------------------------------------


class WebTable(RemHashTable):
    """RemHashTable of 12-byte keys and u32 values, summed 32 at a time."""

    def __init__(self, manager: Manager, **kw: Any):
        super().__init__(manager, **kw)
        self.lookups = 0
        self.far_lookups = 0  # keys that were not resident (fetched far)

    def lookup_sum(self, scope: DerefScope, keys: list[bytes]) -> int:
        """Sum of the keys' values: resident ones copied by values_of, the rest far. May park.

        The resident values are 4-byte copies (values_of: no view, no pin), so
        nothing is pinned while the far batch parks: 64 green threads parked
        holding pins could otherwise pin a small heap whole and starve the
        allocations their own fetches need.
        """
        values = self.values_of(keys, int(self.clock()))
        self.lookups += len(keys)
        if None not in values and len(values) == KEYS_PER_REQUEST:
            return sum(_U32_REQUEST.unpack(b"".join(values)))  # all resident: summed in C
        total = 0
        missing = []
        from_bytes = int.from_bytes
        for key, value in zip(keys, values, strict=True):
            if value is None:
                missing.append(key)
            else:
                total += from_bytes(value, "little")
        if missing:
            self.far_lookups += len(missing)
            for key, item in zip(missing, self.get_many(scope, missing), strict=True):
                if item is None:
                    raise FarDataLost(f"key {key!r} is neither local nor far")
                total += from_bytes(item.value, "little")
        return total

    def load_far(self, items, window: int = 2048) -> None:
        """Write (key, value) items straight to the far node, keys into the filter. May park."""
        ds = self._far_ds()
        add = self.filter.add
        bodies = []
        for key, value in items:
            add(key)
            bodies.append(encode_write(key, _U32.pack(value)))
            if len(bodies) == 8192:
                bulk_write(self.manager, ds, bodies, window)
                bodies = []
        bulk_write(self.manager, ds, bodies, window)


def bulk_write(mgr: Manager, ds: int, bodies: list[bytes], window: int = 2048) -> None:
    """Pipelined far WRITEs, at most `window` in flight; raises on any failure. May park."""
    far = mgr.far
    state: dict[str, Any] = {"left": 0, "waiter": None, "error": None}
    low = window // 2

    def done(status: Any, body: Any) -> None:
        state["left"] -= 1
        if status != Status.OK and state["error"] is None:
            state["error"] = body
        w = state["waiter"]
        if w is not None and (state["left"] <= low or state["error"] is not None):
            state["waiter"] = None
            w.switch(None)

    def wait(limit: int) -> None:
        while state["left"] > limit and state["error"] is None:
            w = state["waiter"] = H.Waiter(mgr.hub)
            w.get(60, FarTimeout("bulk write stalled"))

    for body in bodies:
        if state["left"] >= window:
            wait(low)
        state["left"] += 1
        far.submit(Op.WRITE, ds, body, done)
        if state["error"] is not None:
            break
    low = 0
    wait(0)
    if state["error"] is not None:
        raise FarTimeout(f"bulk far write failed: {state['error']!r}")


class FarBackend:
    """The far-memory runtime: RemHashTable + RemArray over a bounded heap."""

    name = "far"

    def __init__(
        self,
        ds: Dataset,
        port: int,
        target_bytes: int,
        progress: Progress = _quiet,
        threads: int = 64,
    ):
        self.ds = ds
        self.responder = Responder()
        fixed = CuckooFilter(ds.n_keys).nbytes + 8 * ds.n_elems + 64 * 1024
        heap = max(MIN_HEAP, heap_bytes_for(target_bytes - fixed, ds.n_keys))
        seg = segment_size_for(heap, threads)
        heap = heap // seg * seg
        self.far = FarClient("127.0.0.1", port, timeout=10)
        # The evacuator's marks: it starts at 4% of the heap free and stops at 7%. The
        # runtime's defaults (12%, 22%) leave room for a server's bursts of sets; this
        # app admits ~1 item a request at 25%, and at the defaults the heap kept ~17%
        # of itself empty: 4.1% of lookups missed at 25%, 1.1% now (22.8 -> 24.3% of
        # W measured, still inside the budget, which counts the whole heap).
        self.mgr = mgr = Manager(heap, self.far, segment_size=seg, start_free=0.04, stop_free=0.07)
        mgr.start()
        if not self.far.wait_ready(15):
            raise FarTimeout("far node not reachable")
        self.reads = 0  # array reads
        self.array_misses = 0  # array reads of a non-resident element (a far fetch)
        self.table = WebTable(mgr, expected_far_items=ds.n_keys)
        self.arr = RemArray(mgr, ELEM_SIZE, ds.n_elems, prefetch=False)
        progress(f"loading {ds.n_elems} elements far")
        self._load_array()
        progress(
            f"loading {ds.n_keys} keys far (heap {heap / MiB:.1f} MiB, {seg >> 10} KiB segments)"
        )
        self.table.load_far(ds.items())

    def _load_array(self) -> None:
        arr, ds = self.arr, self.ds
        far_ds = arr._far_ds()
        for start in range(0, ds.n_elems, 1024):
            idx = range(start, min(start + 1024, ds.n_elems))
            bulk_write(
                self.mgr, far_ds, [encode_write(encode_index(i), ds.element(i)) for i in idx]
            )
            for i in idx:
                arr.words[i] = far_word(i, 0)  # far only: what evacuation leaves behind

    def request(self, scope: DerefScope, r: int):
        """Serve request r: its reply buffer. May park."""
        total = self.table.lookup_sum(scope, self.ds.keys_of(r))
        scope.release()  # the 32 lookups' scope ends; the element gets its own
        self.reads += 1
        i = total % self.ds.n_elems
        if not self.arr.words[i] & PRESENT:
            self.array_misses += 1
        return self.responder.reply(self.arr.at(scope, i, nt=True), i)

    def counters(self) -> dict[str, float]:
        """Cumulative counts: lookups, misses, reads, wire bytes."""
        return {
            "lookups": self.table.lookups,
            "hash_misses": self.table.far_lookups,
            "reads": self.reads,
            "array_misses": self.array_misses,
            "bytes": self.far.bytes_sent + self.far.bytes_received,
            "faults": 0,
        }

    def memory(self) -> dict[str, int]:
        """Measured local bytes by part."""
        return {
            "heap": self.mgr.heap.peak_used_bytes,
            "index": self.table.index_bytes(),
            "filter": self.table.filter.nbytes,
            "array_words": sys.getsizeof(self.arr.words),
        }

    def close(self) -> None:
        """Stop the runtime."""
        self.mgr.close()


# -- paging mode ----------------------------------------------------------------


class PagingBackend:
    """The Fastswap-like baseline: 4 KiB pages, a CLOCK cache, blocking faults."""

    name = "paging"

    def __init__(self, ds: Dataset, port: int, target_bytes: int, progress: Progress = _quiet):
        self.ds = ds
        self.responder = Responder()
        n_slots = slots_for(ds.n_keys)
        table_pages = n_slots * 16 // PAGE
        elem_pages = ELEM_SIZE // PAGE
        n_pages = table_pages + ds.n_elems * elem_pages
        table_bytes = n_pages * 4 + 4 * 1024  # page table and the containers' headers
        nframes = max(16, (target_bytes - table_bytes) // (PAGE + 6))
        nframes = min(nframes, n_pages)
        self.far = BlockingFar("127.0.0.1", port)
        self.mem = mem = PagedMemory(self.far, n_pages, nframes)
        self.table = PagedHashTable(mem, n_slots)
        self.arr = PagedArray(mem, table_pages * PAGE, ELEM_SIZE, ds.n_elems)
        progress(f"building the {table_pages}-page hash region")
        region = PagedHashTable.build(ds.items(), n_slots)
        progress(f"loading {n_pages} pages far ({nframes} frames local)")
        mem.load((p, region[p * PAGE : (p + 1) * PAGE]) for p in range(table_pages))
        del region
        mem.load(self._element_pages(table_pages))

    def _element_pages(self, first: int):
        per = ELEM_SIZE // PAGE
        for i in range(self.ds.n_elems):
            data = self.ds.element(i)
            for k in range(per):
                yield first + i * per + k, data[k * PAGE : (k + 1) * PAGE]

    def request(self, scope: DerefScope, r: int):
        """Serve request r; a page fault blocks the whole process."""
        total = self.table.lookup_sum(self.ds.keys_of(r))
        i = total % self.ds.n_elems
        return self.responder.reply(self.arr.read(i), i)

    def counters(self) -> dict[str, float]:
        """Cumulative counts: lookups, misses, reads, wire bytes, faults."""
        return {
            "lookups": self.table.lookups,
            "hash_misses": self.table.missed,
            "reads": self.arr.reads,
            "array_misses": self.arr.missed,
            "bytes": self.far.bytes_sent + self.far.bytes_received,
            "faults": self.mem.faults,
        }

    def memory(self) -> dict[str, int]:
        """Measured local bytes: frames, page table, per-frame metadata."""
        return {"page_cache": self.mem.local_bytes()}

    def close(self) -> None:
        """Close the far connection."""
        self.far.close()


# -- local mode -----------------------------------------------------------------


class LocalBackend:
    """Everything local: a dict and one bytearray (the ideal)."""

    name = "local"

    def __init__(self, ds: Dataset, port: int, target_bytes: int, progress: Progress = _quiet):
        self.ds = ds
        self.responder = Responder()
        progress(f"building {ds.n_keys} keys and {ds.n_elems} elements locally")
        self.table = dict(ds.items())
        self.elems = bytearray(ds.n_elems * ELEM_SIZE)
        for i in range(ds.n_elems):
            self.elems[i * ELEM_SIZE : (i + 1) * ELEM_SIZE] = ds.element(i)
        self.view = memoryview(self.elems)
        self.lookups = 0
        self.reads = 0

    def request(self, scope: DerefScope, r: int):
        """Serve request r from local memory."""
        total = sum(map(self.table.__getitem__, self.ds.keys_of(r)))
        self.lookups += 32
        self.reads += 1
        i = total % self.ds.n_elems
        return self.responder.reply(self.view[i * ELEM_SIZE : (i + 1) * ELEM_SIZE], i)

    def counters(self) -> dict[str, float]:
        """Cumulative counts (no misses, no bytes moved)."""
        return {
            "lookups": self.lookups,
            "hash_misses": 0,
            "reads": self.reads,
            "array_misses": 0,
            "bytes": 0,
            "faults": 0,
        }

    def memory(self) -> dict[str, int]:
        """Measured local bytes: the dict, its keys and ints, the elements."""
        size = sys.getsizeof
        t = self.table
        n = size(t) + sum(map(size, t)) + sum(map(size, t.values()))
        return {"dict": n, "elements": size(self.elems)}

    def close(self) -> None:
        """Nothing to stop."""


BACKENDS = {"local": LocalBackend, "far": FarBackend, "paging": PagingBackend}


def node_memory_mb(ds: Dataset) -> int:
    """A far-node limit that holds the whole data set in either layout, with room."""
    need = ds.n_keys * (KEY_SIZE + 4 + 400) + ds.n_elems * (ELEM_SIZE + 400)
    return need * 3 // 2 // MiB + 64


# -- the harness ------------------------------------------------------------------


def run_point(
    ds: Dataset,
    mode: str,
    local_pct: float,
    stream: list[int],
    *,
    threads: int = 64,
    warmup: float = 5.0,
    seconds: float = 10.0,
    check: bool = False,
    progress: Progress = _quiet,
    profile: Any = None,
) -> dict[str, Any]:
    """Load, warm up, measure one (mode, local %) point; a dict of results.

    With check=True the result also has "replies": (request, crc32 of reply)
    for every request served, warm-up included. A cProfile.Profile given as
    `profile` is enabled for the measured window only.
    """
    target = int(ds.working_set * local_pct / 100)
    node = FarProcess(memory_mb=node_memory_mb(ds)) if mode != "local" else None
    gc.collect()
    try:
        return H.run(
            _point,
            ds,
            mode,
            local_pct,
            target,
            node,
            stream,
            threads,
            warmup,
            seconds,
            check,
            progress,
            profile,
        )
    finally:
        if node is not None:
            node.stop()


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process `pid` (Linux /proc); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _point(
    ds, mode, local_pct, target, node, stream, threads, warmup, seconds, check, progress, profile
):
    t0 = time.perf_counter()
    extra = {"threads": threads} if mode == "far" else {}
    backend = BACKENDS[mode](ds, node.port if node else 0, target, progress, **extra)
    load_s = time.perf_counter() - t0
    progress(f"loaded in {load_s:.1f} s; warming up {warmup:g} s, then measuring {seconds:g} s")
    n_stream = len(stream)
    npid = node.pid if node is not None else None
    state: dict[str, Any] = {"pos": 0, "snap": None}
    latencies: list[float] = []
    replies: list[tuple[int, int]] = []
    start = time.perf_counter()
    t_measure = start + warmup
    t_end = t_measure + seconds

    def worker(k: int) -> None:
        scope = DerefScope()
        crc = zlib.crc32
        lat = latencies.append
        while True:
            a = time.perf_counter()
            if a >= t_end:
                return
            if state["snap"] is None and a >= t_measure:
                state["snap"] = (backend.counters(), a, time.process_time(), _cpu_seconds(npid))
                if profile is not None:
                    profile.enable()
            r = stream[state["pos"] % n_stream]
            state["pos"] += 1
            try:
                reply = backend.request(scope, r)
            finally:
                scope.release()
            b = time.perf_counter()
            if a >= t_measure and b <= t_end:
                lat(b - a)
            if check:
                replies.append((r, crc(reply)))
            H.yield_now()

    for t in [H.spawn(worker, k) for k in range(threads)]:
        t.join()
    end_counts = backend.counters()
    cpu_end, node_end = time.process_time(), _cpu_seconds(npid)
    if profile is not None:
        profile.disable()
    snap = state["snap"] or (end_counts, t_end, cpu_end, node_end)
    before, t_snap, cpu_start, node_start = snap
    window = max(t_end - t_snap, 1e-9)
    n = len(latencies)
    d = {k: end_counts[k] - before[k] for k in end_counts}
    reads = d["reads"]
    mem = backend.memory()
    local_bytes = sum(mem.values())
    backend.close()
    lat_sorted = sorted(latencies)
    result: dict[str, Any] = {
        "mode": mode,
        "local_pct": local_pct,
        "local_bytes": local_bytes,
        "local_pct_measured": 100 * local_bytes / ds.working_set,
        "throughput": n / window,
        "p50_ms": 1e3 * lat_sorted[n // 2] if n else float("nan"),
        "p90_ms": 1e3 * lat_sorted[int(n * 0.9)] if n else float("nan"),
        "hash_miss": d["hash_misses"] / d["lookups"] if d["lookups"] else 0.0,
        "array_miss": d["array_misses"] / reads if reads else 0.0,
        "bytes_per_req": d["bytes"] / n if n else 0.0,
        "faults_per_req": d["faults"] / n if n else 0.0,
        "requests": n,
        "cpu_us_per_req": 1e6 * (cpu_end - cpu_start) / n if n else float("nan"),
        "node_cpu_us_per_req": 1e6 * (node_end - node_start) / n if n else float("nan"),
        "load_s": load_s,
        "memory": mem,
        "threads": threads,
        "seconds": seconds,
    }
    if check:
        result["replies"] = replies
    progress(
        f"{n / window:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, hash miss "
        f"{result['hash_miss']:.1%}, array miss {result['array_miss']:.1%}, local "
        f"{local_bytes / MiB:.1f} MiB ({result['local_pct_measured']:.1f}% of W)"
    )
    return result
