"""runtime/structures.py with the evacuator and far client against a real farserver.

Spec (issue: the far-memory runtime; DESIGN §3-§7): far reads park only the
caller; the heap never exceeds its budget; hot objects survive, cold clean
ones are dropped with no I/O, cold dirty ones are written back; a write during
write-back wins; a scope held across a park keeps its views valid; offloaded
reductions run at the far node; a dead or stalled far node gives errors,
never wrong data, and the runtime recovers when it returns.
"""

from __future__ import annotations

import random
import struct
import time
import zlib

import pytest
from farharness import HoldingClient, with_runtime

from runtime import hub as H
from runtime.errors import FarDataLost, FarTimeout, FarUnavailable
from runtime.scope import DerefScope
from runtime.structures import RemArray, RemBox

MiB = 1 << 20
ELEM = 8192


def content(i: int, elem: int = ELEM) -> bytes:
    """Distinct, checkable contents for element i."""
    return struct.pack("<Q", i * 2654435761 % 2**64) * (elem // 8)


def test_64_mib_through_a_4_mib_heap_from_64_green_threads(far_node):
    n = 64 * MiB // ELEM  # 8192 elements of 8 KiB

    def main(mgr):
        heap = mgr.heap
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        worst = [0]

        def watch():
            while not done[0]:
                worst[0] = max(worst[0], heap.used_bytes)
                H.sleep(0.001)

        done = [False]
        watcher = H.spawn(watch)
        for i in range(n):
            arr.write(i, content(i))
            assert heap.used_bytes <= heap.budget_bytes
        order = list(range(n))
        random.Random(7).shuffle(order)
        bad = []

        def reader(part):
            for i in part:
                with DerefScope() as scope:
                    if arr.at(scope, i) != content(i):
                        bad.append(i)
                assert heap.used_bytes <= heap.budget_bytes

        threads = [H.spawn(reader, order[k::64]) for k in range(64)]
        for t in threads:
            t.join()
        done[0] = True
        watcher.join()
        return bad, worst[0], heap.peak_used_bytes, heap.budget_bytes, mgr.stats()

    bad, worst, peak, budget, stats = with_runtime(far_node, 4 * MiB, main, timeout=10)
    assert bad == []
    assert worst <= budget and peak <= budget
    assert stats["evacuations"] >= n - 4 * MiB // ELEM  # most elements were written back
    assert stats["far_reads"] >= n // 2
    assert stats["clean_drops"] > 0  # fetched-back elements were dropped again, no I/O


def test_clean_objects_are_dropped_without_far_writes(far_node):
    n = 2048  # 16 MiB through an 8 MiB heap

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        for i in range(n):
            arr.write(i, content(i))
        for i in range(n):  # every read that goes far comes back clean
            assert arr.read(i) == content(i)
        writes_before = mgr.evacuator.writebacks
        drops_before = mgr.evacuator.clean_drops
        for _ in range(2):
            for i in range(n):
                assert arr.read(i) == content(i)
        return mgr.evacuator.writebacks - writes_before, mgr.evacuator.clean_drops - drops_before

    new_writes, new_drops = with_runtime(far_node, 8 * MiB, main)
    assert new_writes == 0
    assert new_drops > 0


def test_write_during_evacuation_keeps_the_new_value(far_node):
    n = 1024  # 8 MiB through a 4 MiB heap

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        held = mgr.far  # a HoldingClient: write-back acks wait for release()
        filler = H.spawn(lambda: [arr.write(i, content(i)) for i in range(n)])
        deadline = time.monotonic() + 10
        while not held.held and time.monotonic() < deadline:
            H.sleep(0.005)
        assert held.held, "no write-back started"
        from runtime.pointer import EVACUATING

        evacuating = [i for i in range(n) if arr.words[i] & EVACUATING]
        assert evacuating
        target = evacuating[-1]
        new = b"N" * ELEM
        # the acks come back 0.2 s from now; the write may park for space until then
        mgr.hub.loop.call_later(0.2, held.release)
        arr.write(target, new)  # written while its write-back is in flight
        assert not arr.words[target] & EVACUATING
        filler.join()
        # push everything out, then read the target back, from far if need be
        for i in range(n):
            if i != target:
                arr.write(i, content(i) if i % 2 else b"z" * ELEM)
        return arr.read(target) == new, target

    ok, target = with_runtime(far_node, 4 * MiB, main, client=HoldingClient)
    assert ok, f"element {target} lost its write made during evacuation"


def test_scope_across_a_park_keeps_views_valid(far_node):
    n = 2048

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        for i in range(64):
            arr.write(i, content(i))
        with DerefScope() as scope:
            views = [arr.at(scope, i) for i in range(64)]
            pinned = {seg.id for seg in scope._pins}

            def churn():
                for i in range(64, n):
                    arr.write(i, content(i))

            H.spawn(churn).join()  # parks here while the evacuator works
            assert mgr.evacuator.rounds > 0
            intact = all(bytes(v) == content(i) for i, v in enumerate(views))
            still_there = all(s in mgr.heap.segments for s in pinned)
        return intact, still_there, mgr.heap.used_bytes <= mgr.heap.budget_bytes

    assert with_runtime(far_node, 8 * MiB, main) == (True, True, True)


def test_offloaded_reductions_and_copy(far_node):
    n = 512

    def main(mgr):
        arr = RemArray(mgr, 64, n, prefetch=False)
        for i in range(n):
            arr.write(i, struct.pack("<8Q", *(i + k for k in range(8))))
        expect_sum = sum(i + k for i in range(100, 300) for k in range(8)) % 2**64
        got_sum = arr.sum(100, 200)
        crc = 0
        for i in range(10, 20):
            crc = zlib.crc32(arr.read(i), crc)
        got_crc = arr.checksum(10, 10)
        arr.copy(0, 400, 50)
        copied = all(arr.read(400 + i) == arr.read(i) for i in range(50))
        return got_sum == expect_sum, got_crc == crc, copied, mgr.counters["offloads"]

    s, c, cp, offloads = with_runtime(far_node, 4 * MiB, main)
    assert (s, c, cp) == (True, True, True) and offloads == 3


def test_rembox_round_trip_through_far(far_node):
    def main(mgr):
        boxes = [RemBox(mgr, b"box%d" % i * 1000) for i in range(3000)]  # ~12 MB
        ok = all(b.get() == b"box%d" % i * 1000 for i, b in enumerate(boxes))
        with DerefScope() as scope:
            v = boxes[5].deref_mut(scope)
            v[:3] = b"BOX"
        return ok, boxes[5].get()[:4], mgr.evacuator.writebacks > 0

    ok, head, wrote = with_runtime(far_node, 4 * MiB, main)
    assert ok and head == b"BOX5" and wrote


def test_stride_prefetch_fetches_ahead(far_node):
    n = 2048

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=True)
        for i in range(n):
            arr.write(i, content(i))
        before = mgr.counters["far_reads"]
        ok = all(arr.read(i) == content(i) for i in range(0, n, 2))
        return ok, mgr.counters["prefetches"], mgr.counters["far_reads"] - before

    ok, prefetches, demand_reads = with_runtime(far_node, 4 * MiB, main)
    assert ok and prefetches > 500
    assert demand_reads < 512  # most strided reads found their element prefetched


def test_dead_far_node_errors_then_recovery(far_node):
    n = 1024

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        for i in range(n):
            arr.write(i, content(i))
        far_only = [i for i in range(n) if not arr.words[i] >> 63]
        assert len(far_only) > 100
        ticks = [0]
        stop = [False]

        def ticker():
            while not stop[0]:
                ticks[0] += 1
                H.sleep(0.005)

        H.spawn(ticker)
        results = []

        def reader(i):
            t0 = time.monotonic()
            try:
                data = arr.read(i)
                results.append(("ok", data == content(i), time.monotonic() - t0))
            except (FarUnavailable, FarTimeout, FarDataLost) as exc:
                results.append((type(exc).__name__, True, time.monotonic() - t0))

        far_node.kill()
        threads = [H.spawn(reader, i) for i in far_only[:50]]
        for t in threads:
            t.join()
        ticks_during = ticks[0]
        far_node.start()  # same port, a new, empty node
        assert mgr.far.wait_ready(30)  # loaded: a first HELLO may time out (1 s), then back off
        H.sleep(0.1)
        # far-only data died with the node: FarDataLost, never wrong bytes
        lost = []
        for i in far_only[:20]:
            try:
                arr.read(i)
            except FarDataLost:
                lost.append(i)
        # new operations succeed
        arr2 = RemArray(mgr, ELEM, 1024, prefetch=False)
        for i in range(1024):
            arr2.write(i, content(i + 7))
        fresh = all(arr2.read(i) == content(i + 7) for i in range(1024))
        stop[0] = True
        return results, ticks_during, len(lost), fresh

    results, ticks, lost, fresh = with_runtime(far_node, 4 * MiB, main, timeout=1.0)
    assert len(results) == 50
    assert all(correct for _, correct, _ in results)  # nothing wrong, ever
    assert all(kind != "ok" or correct for kind, correct, _ in results)
    assert max(elapsed for _, _, elapsed in results) < 1.5  # within the far timeout
    assert ticks > 0  # the loop kept serving other green threads
    assert lost == 20
    assert fresh


def test_stalled_far_node_times_out(far_node):
    def main(mgr):
        arr = RemArray(mgr, ELEM, 1024, prefetch=False)
        for i in range(1024):
            arr.write(i, content(i))
        far_only = [i for i in range(1024) if not arr.words[i] >> 63]
        far_node.pause()
        try:
            t0 = time.monotonic()
            # a timeout, or, when write-backs in flight timed out with it, the
            # node declared stalled (runtime.farclient): answered as unavailable
            with pytest.raises((FarTimeout, FarUnavailable)):
                arr.read(far_only[0])
            elapsed = time.monotonic() - t0
        finally:
            far_node.resume()
        # Requests sent during the pause (write-backs) may all time out just after it,
        # before their late replies are read: 128 in a row declare the node stalled,
        # failing what is in flight then, and the client serves without the node until
        # a PING is answered. Recovery is what is asserted: a read succeeds, within 10 s.
        deadline = time.monotonic() + 10
        while True:
            try:
                return elapsed, arr.read(far_only[1]) == content(far_only[1])
            except FarUnavailable:
                if time.monotonic() > deadline:
                    raise
                mgr.far.wait_ready(1)
                H.sleep(0.05)

    elapsed, ok = with_runtime(far_node, 4 * MiB, main, timeout=0.5)
    assert 0.3 < elapsed < 1.5
    assert ok


def test_at_many_issues_every_fetch_before_one_park(far_node):
    n = 1024

    def main(mgr):
        arr = RemArray(mgr, ELEM, n, prefetch=False)
        for i in range(n):
            arr.write(i, content(i))
        far_only = [i for i in range(n) if not arr.words[i] >> 63][:64]
        before = mgr.counters["far_reads"]  # READs submitted
        with DerefScope() as scope:
            views = arr.at_many(scope, far_only + far_only[:3], nt=True)
            ok = [bytes(v) for v in views] == [content(i) for i in far_only + far_only[:3]]
        return ok, mgr.counters["far_reads"] - before

    ok, reads = with_runtime(far_node, 4 * MiB, main)
    assert ok and reads == 64  # duplicates share one read


def test_at_many_with_the_node_down_raises(far_node):
    def main(mgr):
        arr = RemArray(mgr, ELEM, 1024, prefetch=False)
        for i in range(1024):
            arr.write(i, content(i))
        far_only = [i for i in range(1024) if not arr.words[i] >> 63][:10]
        far_node.kill()
        H.sleep(0.2)
        with DerefScope() as scope, pytest.raises((FarUnavailable, FarTimeout)):
            arr.at_many(scope, far_only)
        with pytest.raises((FarUnavailable, FarTimeout)):
            arr.read(far_only[0])
        return True

    assert with_runtime(far_node, 4 * MiB, main)


def test_far_client_needs_the_shared_secret(tmp_path):
    from runtime.farclient import FarClient
    from runtime.farprocess import FarProcess
    from runtime.manager import Manager

    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret\n")
    with FarProcess(secret_file=str(secret)) as node:

        def main():
            wrong = FarClient("127.0.0.1", node.port, secret=b"nope", timeout=1)
            refused = not wrong.wait_ready(1.0)
            wrong.close()
            right = FarClient("127.0.0.1", node.port, secret=b"s3cret", timeout=1)
            mgr = Manager(4 * MiB, right)
            mgr.start()
            ok = right.wait_ready(5)
            arr = RemArray(mgr, ELEM, 1024, prefetch=False)
            for i in range(1024):
                arr.write(i, content(i))
            data_ok = all(arr.read(i) == content(i) for i in range(1024))
            mgr.close()
            return refused, ok, data_ok

        assert H.run(main) == (True, True, True)
