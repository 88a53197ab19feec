"""runtime/hashtable.py and runtime/cuckoo.py against a real farserver.

Spec (DESIGN §6, issue 4's RemHashTable): the local index holds resident
items only; cold items leave entirely and their keys go to a compact filter
that answers >= 99% of never-stored misses with no round trip; a far get
re-admits the item clean (non-temporal above a threshold); a set removes the
stale far copy; expired items are misses; the cache may forget, never serve
a wrong value.
"""

from __future__ import annotations

import os
import random
import time

from farharness import HoldingClient, with_runtime

from runtime import hub as H
from runtime.cuckoo import CuckooFilter
from runtime.errors import FarTimeout, FarUnavailable
from runtime.farprocess import FarProcess
from runtime.hashtable import RemHashTable
from runtime.manager import Manager
from runtime.scope import DerefScope

MiB = 1 << 20


def value_of(key: bytes, size: int) -> bytes:
    """Distinct, checkable contents for a key."""
    seed = key * (size // len(key) + 1)
    return seed[:size]


def test_cuckoo_filter_no_false_negatives_few_false_positives():
    f = CuckooFilter(50_000)
    keys = [os.urandom(10) for _ in range(47_000)]
    for k in keys:
        f.add(k)
    assert all(k in f for k in keys)
    fp = sum(os.urandom(11) in f for _ in range(50_000))
    assert fp / 50_000 < 0.01
    assert f.nbytes / len(keys) < 2.0  # issue 4: <= 2 B per far item
    for k in keys[:20_000]:
        assert f.discard(k)
    assert all(k in f for k in keys[20_000:])
    assert len(f) == 27_000


def test_cuckoo_filter_churn_keeps_every_live_key():
    rnd = random.Random(5)
    f = CuckooFilter(20_000)
    live: list[bytes] = []
    for step in range(60_000):
        if live and rnd.random() < 0.45:
            key = live.pop(rnd.randrange(len(live)))
            assert f.discard(key)
        else:
            key = rnd.randbytes(12)
            f.add(key)
            live.append(key)
        if step % 10_000 == 0:
            assert all(k in f for k in live)
    assert all(k in f for k in live) and len(f) == len(live) and f.dropped == 0


def test_cuckoo_filter_grows_when_full():
    f = CuckooFilter(64)
    keys = [os.urandom(8) for _ in range(1000)]
    for k in keys:
        f.add(k)
    assert len(f.tables) > 1
    assert sum(k in f for k in keys) >= 1000 - f.dropped


def test_items_go_far_and_come_back_byte_exact(far_node):
    sizes = [100, 1000, 10_000, 100_000]

    def main(mgr):
        table = RemHashTable(mgr, expected_far_items=100_000)
        keys = [b"key:%d" % i for i in range(3000)]
        for i, k in enumerate(keys):  # ~ 40 MB through an 8 MiB heap
            table.set(k, value_of(k, sizes[i % 4]), flags=i, exptime=0, cas=i + 1)
            assert mgr.heap.used_bytes <= mgr.heap.budget_bytes
        resident = len(table)
        order = keys[:]
        random.Random(3).shuffle(order)
        bad = []

        def reader(part):
            for k in part:
                with DerefScope() as scope:
                    item = table.get(scope, k)
                    i = int(k.split(b":")[1])
                    if item is None or bytes(item.value) != value_of(k, sizes[i % 4]):
                        bad.append(k)
                    elif (item.flags, item.cas) != (i, i + 1):
                        bad.append(k)

        for t in [H.spawn(reader, order[j::16]) for j in range(16)]:
            t.join()
        return bad, resident, table.stats, mgr.stats()

    bad, resident, st, ms = with_runtime(far_node, 8 * MiB, main, timeout=10)
    assert bad == []
    assert resident < 3000  # most items left local memory, key and value
    assert st["far_hits"] > 1000 and ms["evacuations"] > 1000


def test_never_stored_misses_cost_no_round_trip(far_node):
    def main(mgr):
        table = RemHashTable(mgr, expected_far_items=50_000)
        for i in range(20_000):
            table.set(b"k%d" % i, b"v" * 500)
        reads = mgr.counters["far_reads"]
        with DerefScope() as scope:
            misses = [table.get(scope, b"never%d" % i) for i in range(10_000)]
        return misses.count(None), mgr.counters["far_reads"] - reads, table.stats

    misses, far_reads, st = with_runtime(far_node, 4 * MiB, main)
    assert misses == 10_000
    assert far_reads <= 100  # >= 99% answered by the filter
    assert st["filter_negatives"] >= 9_900


def test_set_removes_the_stale_far_copy(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        table.set(b"target", b"old" * 1000)
        for i in range(8000):  # push it far
            table.set(b"fill%d" % i, b"x" * 1000)
        assert b"target" not in table.index and table.may_be_far(b"target")
        table.set(b"target", b"new" * 10)
        with DerefScope() as scope:
            now = bytes(table.get(scope, b"target").value)
        assert table.delete(b"target")
        with DerefScope() as scope:
            gone = table.get(scope, b"target")
        for i in range(8000):  # and again: nothing old comes back
            table.set(b"fill%d" % i, b"y" * 1000)
        with DerefScope() as scope:
            still_gone = table.get(scope, b"target")
        return now, gone, still_gone

    assert with_runtime(far_node, 4 * MiB, main) == (b"new" * 10, None, None)


def test_expired_items_are_misses_here_and_far(far_node):
    def main(mgr):
        now = time.time()
        table = RemHashTable(mgr)
        table.set(b"short", b"s" * 100, exptime=int(now) + 1)
        table.set(b"long", b"l" * 100, exptime=int(now) + 3600)
        for i in range(6000):
            table.set(b"fill%d" % i, b"x" * 1000)
        H.sleep(2.1)
        with DerefScope() as scope:
            short = table.get(scope, b"short")
            long = table.get(scope, b"long")
        return short, bytes(long.value) if long else None

    assert with_runtime(far_node, 4 * MiB, main) == (None, b"l" * 100)


def test_large_values_are_served_non_temporally(far_node):
    def main(mgr):
        table = RemHashTable(mgr, nt_threshold=100_000)
        table.set(b"big", b"B" * 200_000)
        table.set(b"small", b"s" * 1000)
        for i in range(6000):
            table.set(b"fill%d" % i, b"x" * 1000)
        with DerefScope() as scope:
            big = table.get(scope, b"big")
            small = table.get(scope, b"small")
            ok = bytes(big.value) == b"B" * 200_000 and bytes(small.value) == b"s" * 1000
        return ok, b"big" in table.index, b"small" in table.index, table.stats["nt_reads"]

    assert with_runtime(far_node, 4 * MiB, main) == (True, False, True, 1)


def test_lookup_many_serves_live_residents_and_leaves_the_rest():
    def main():
        table = RemHashTable(Manager(4 * MiB))
        now = int(time.time())
        table.set(b"a", b"A" * 10, flags=7, exptime=0, cas=11)
        table.set(b"old", b"O", exptime=now - 1)
        table.set(b"b", b"B" * 300, flags=1, exptime=now + 100, cas=12)
        with DerefScope() as scope:
            found = table.lookup_many(scope, [b"a", b"missing", b"old", b"b", b"a"], now)
            got = [None if f is None else (f[0], f[1], bytes(f[2])) for f in found]
            with DerefScope() as s2:
                state = table.peek(s2, b"a").state
                atime = table.peek(s2, b"a").atime
        return got, state, atime, now

    got, state, atime, now = H.run(main)
    assert got == [(7, 11, b"A" * 10), None, None, (1, 12, b"B" * 300), (7, 11, b"A" * 10)]
    assert state & 1  # FETCHED: mg h sees it was read
    assert atime == now


def test_values_of_copies_live_resident_values_and_pins_nothing():
    def main():
        table = RemHashTable(Manager(4 * MiB))
        now = int(time.time())
        table.set(b"a", b"A" * 10, flags=7)
        table.set(b"old", b"O", exptime=now - 1)
        table.set(b"b", b"B" * 300, exptime=now + 100)
        table.set(b"empty", b"")
        got = table.values_of([b"a", b"missing", b"old", b"b", b"empty", b"a"], now)
        with DerefScope() as scope:
            state = table.peek(scope, b"b").state
        pinned = sum(seg.pins for seg in table.manager.heap.table if seg is not None)
        return got, state, pinned

    got, state, pinned = H.run(main)
    assert got == [b"A" * 10, None, None, b"B" * 300, b"", b"A" * 10]
    assert all(type(v) is bytes for v in got if v is not None)  # copies, not views
    assert state & 1  # FETCHED, as lookup_many marks it
    assert pinned == 0


def test_values_of_across_warm_passes_and_warm_keys_changes_nothing():
    """values_of warms 16 keys at a time: a long list with gaps, odd keys and a
    key whose hash shares a home reads the same as one probe per key, and
    warm_keys on its own (any bounds, any key types) leaves no trace."""

    class Key(bytes):  # a bytes subclass: its hash is not read in C
        pass

    def main():
        table = RemHashTable(Manager(16 * MiB))
        now = int(time.time())
        for i in range(3000):
            if i % 7:
                table.set(b"k%d" % i, b"v%d" % i)
        keys = [b"k%d" % i for i in range(0, 3000, 3)] + [Key(b"k1"), Key(b"k2"), b"k0"]
        before = [table.index.entries.tobytes(), table.words.tobytes(), len(table)]
        table.warm_keys(keys, 0, len(keys) + 50)
        table.warm_keys(keys, len(keys) - 3, 10**9)
        table.warm_keys(keys, 5, 2)
        table.warm_keys([], 0, 16)
        after = [table.index.entries.tobytes(), table.words.tobytes(), len(table)]
        got = table.values_of(keys, now)
        one_by_one = [table.values_of([k], now)[0] for k in keys]
        return before == after, got, one_by_one, keys

    unchanged, got, one_by_one, keys = H.run(main)
    assert unchanged
    assert got == one_by_one
    want = [None if int(k[1:]) % 7 == 0 else b"v" + bytes(k[1:]) for k in keys]
    assert got == want


def test_overwriting_a_resident_item_with_a_far_copy_removes_that_copy(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        table.set(b"target", b"old" * 1000)
        for i in range(8000):  # push it far
            table.set(b"fill%d" % i, b"x" * 1000)
        with DerefScope() as scope:  # re-admitted clean: resident, with a far copy
            assert bytes(table.get(scope, b"target").value) == b"old" * 1000
        assert b"target" in table.index and table.may_be_far(b"target")
        table.set(b"target", b"new")  # same slot, new bytes: the far copy goes
        H.sleep(0.1)  # its filter entry goes when the node confirms the REMOVE
        assert not table.may_be_far(b"target")
        for i in range(8000):  # push the new one far too, then read it back
            table.set(b"fill%d" % i, b"y" * 1000)
        with DerefScope() as scope:
            return bytes(table.get(scope, b"target").value)

    assert with_runtime(far_node, 4 * MiB, main) == b"new"


def test_item_count_does_not_double_count_readmitted_items(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        keys = [b"n%d" % i for i in range(6000)]
        for k in keys:  # most go far
            table.set(k, b"x" * 1000)
        with DerefScope() as scope:  # some come back clean: resident AND far
            back = [k for k in keys[:500] if table.get(scope, k) is not None]
        counts = [len(table) + table.far_only(), table.resident_far]
        for k in back[:100]:  # overwritten: dirty, the far copy goes
            table.set(k, b"y")
        for k in back[100:200]:
            table.delete(k)
        H.sleep(0.1)  # the far node confirms the REMOVEs
        counts.append(len(table) + table.far_only())
        return len(back), counts

    back, (total, resident_far, after) = with_runtime(far_node, 4 * MiB, main)
    assert back == 500 and resident_far > 0
    assert total == 6000
    assert after == 6000 - 100


class Twin(bytes):
    """A key whose hash is another key's: a sure false positive of the filter."""

    def __new__(cls, value: bytes, twin: bytes):
        obj = super().__new__(cls, value)
        obj.h = hash(twin)
        return obj

    def __hash__(self) -> int:
        return self.h


def test_a_false_positive_never_costs_another_key_its_filter_entry(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        table.set(b"real", b"R" * 1000)
        for i in range(8000):  # push it far
            table.set(b"fill%d" % i, b"x" * 1000)
        assert b"real" not in table.index and table.may_be_far(b"real")
        ghost = Twin(b"ghost", b"real")
        assert table.may_be_far(ghost)  # never stored: a false positive
        with DerefScope() as scope:
            missed = table.get(scope, ghost)  # a far read that finds nothing
        table.set(ghost, b"g")  # a REMOVE the node answers NOT_FOUND
        assert table.delete(ghost)
        H.sleep(0.2)
        with DerefScope() as scope:
            real = table.get(scope, b"real")
            return missed, bytes(real.value) if real else None

    assert with_runtime(far_node, 4 * MiB, main) == (None, b"R" * 1000)


def test_keys_the_far_node_evicts_leave_the_filter():
    node = FarProcess(memory_mb=4)
    try:

        def main(mgr):
            table = RemHashTable(mgr, expected_far_items=50_000)
            for i in range(12_000):  # 12 MB through a 4 MB heap to a 4 MB far node
                table.set(b"e%d" % i, b"x" * 1000)
            H.sleep(2.5)  # a `gone` poll or two
            return len(table.filter), table.stats["far_gone"], len(table)

        in_filter, gone, resident = with_runtime(node, 4 * MiB, main)
    finally:
        node.stop()
    assert gone > 2000  # the node evicted thousands and said so
    assert in_filter < 4500  # what the 4 MB node holds, not all 12k ever written


def test_without_a_far_node_cold_items_are_evicted():
    def main():
        mgr = Manager(4 * MiB)
        mgr.start()
        table = RemHashTable(mgr)
        for i in range(20_000):
            table.set(b"k%d" % i, b"v" * 1000)
            assert mgr.heap.used_bytes <= mgr.heap.budget_bytes
        with DerefScope() as scope:
            recent = table.get(scope, b"k19999")
            old = table.get(scope, b"k0")
        return bytes(recent.value), old, table.stats["evictions"]

    recent, old, evictions = H.run(main)
    assert recent == b"v" * 1000 and old is None and evictions > 15_000


def test_far_node_down_gives_errors_not_wrong_values(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        for i in range(6000):
            table.set(b"k%d" % i, b"%d" % i * 100)
        far_keys = [b"k%d" % i for i in range(6000) if b"k%d" % i not in table.index][:50]
        far_node.kill()
        outcomes = []
        for k in far_keys:
            try:
                with DerefScope() as scope:
                    item = table.get(scope, k)
                outcomes.append(
                    "miss" if item is None else bytes(item.value) == b"%s" % k[1:] * 100
                )
            except (FarUnavailable, FarTimeout):
                outcomes.append("error")
        deadline = time.monotonic() + 10
        while mgr.far.available:  # the client has seen the loss (no stale "available")
            assert time.monotonic() < deadline
            H.sleep(0.01)
        far_node.start()
        assert mgr.far.wait_ready(10)
        assert mgr.far.resets == 1  # connected to the new instance, not the old state
        with DerefScope() as scope:
            after = [table.get(scope, k) for k in far_keys]  # the node lost them: misses
        table.set(b"fresh", b"f" * 100)
        for i in range(6000):
            table.set(b"again%d" % i, b"a" * 1000)
        with DerefScope() as scope:
            fresh = table.get(scope, b"fresh")
        return outcomes, after, bytes(fresh.value)

    outcomes, after, fresh = with_runtime(far_node, 4 * MiB, main, timeout=1.0)
    assert set(outcomes) <= {"error", "miss"}  # never a wrong value
    assert after == [None] * len(after)
    assert fresh == b"f" * 100


def _node_has(mgr, table, key: bytes) -> bool:
    """Whether the far node holds a copy of `key` (a direct READ). May park."""
    from protocol.far import Op, Status, encode_name

    status, _ = mgr.far.call(Op.READ, table.far_ds.ds, encode_name(key))
    return status == Status.OK


def test_an_overtaken_write_back_leaves_no_stale_copy_on_the_node(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        held = mgr.far  # a HoldingClient: write-back acks wait for release()
        keys = [b"k%d" % i for i in range(3000)]

        def fill():
            for k in keys:
                if held.held:
                    return  # write-backs in flight: stop before the heap fills up
                table.set(k, value_of(k, 2000))

        filler = H.spawn(fill)
        deadline = time.monotonic() + 10
        while not held.held and time.monotonic() < deadline:
            H.sleep(0.005)
        from runtime.pointer import EVACUATING

        evacuating = [
            k
            for k in keys[:1500]
            if (s := table.index.get(k)) is not None and table.words[s] & EVACUATING
        ]
        assert evacuating, "no write-back in flight"
        target = evacuating[0]
        table.set(target, b"new")  # overtakes its own write-back (the node has the old)
        table.delete(target)  # never far as far as the filter knows: no REMOVE
        mgr.hub.loop.call_later(0.05, held.release)  # acks arrive in the hub
        filler.join()
        H.sleep(0.1)
        H.sleep(0.1)
        with DerefScope() as scope:
            gone = table.get(scope, target) is None
        return gone, _node_has(mgr, table, target)

    # evacuation starts at 60% free: the filler stops long before allocations must wait
    gone, stale_on_node = with_runtime(
        far_node, 8 * MiB, main, start_free=0.6, stop_free=0.7, client=HoldingClient
    )
    assert gone
    assert not stale_on_node  # without the REMOVE a filter false positive could read it


def test_copies_changed_while_the_node_stalled_are_removed_when_it_answers(far_node):
    def main(mgr):
        table = RemHashTable(mgr)
        keys = [b"k%d" % i for i in range(3000)]
        for k in keys:
            table.set(k, value_of(k, 2000))
        far_keys = [k for k in keys if k not in table.index and table.may_be_far(k)][:10]
        assert len(far_keys) == 10
        far_node.pause()
        try:
            for k in far_keys[:4]:  # three timeouts in a row: stalled
                try:
                    with DerefScope() as scope:
                        table.get(scope, k)
                except (FarUnavailable, FarTimeout):
                    pass
            stalled = mgr.far.state == "stalled"
            table.set(far_keys[5], b"changed")  # its far copy is stale now
            table.delete(far_keys[6])  # its far copy must go
            unsure = table.stats["far_unsure"]
        finally:
            far_node.resume()
        deadline = time.monotonic() + 5
        while not mgr.far.available and time.monotonic() < deadline:
            H.sleep(0.02)
        H.sleep(0.1)  # the REMOVEs sent on the node's return are answered
        with DerefScope() as scope:
            changed = bytes(table.get(scope, far_keys[5]).value)
            deleted = table.get(scope, far_keys[6])
            kept = table.get(scope, far_keys[7])
            kept = kept is not None and bytes(kept.value) == value_of(far_keys[7], 2000)
        node = [_node_has(mgr, table, k) for k in far_keys[5:8]]
        return stalled, unsure, changed, deleted, kept, node

    stalled, unsure, changed, deleted, kept, node = with_runtime(
        far_node, 4 * MiB, main, timeout=0.3
    )
    assert stalled and unsure >= 2  # those two, and any write-back the stall cut short
    assert changed == b"changed" and deleted is None and kept
    assert node == [False, False, True]  # both stale copies removed, the untouched one kept


def test_an_offloaded_change_is_not_undone_by_a_read_in_flight(far_node):
    """A prefetch of a far key, then an incr offloaded to the node: reads see the incr.

    The READ went out before the COMPUTE, so it brings back the old value:
    that must neither be admitted (a stale resident copy marked as the far
    one) nor handed to a reader that came after the change.
    """

    def main(mgr):
        table = RemHashTable(mgr)
        table.set(b"n", b"41")
        for i in range(8000):  # push it far
            table.set(b"fill%d" % i, b"x" * 1000)
        assert b"n" not in table.index and table.may_be_far(b"n")
        assert table.prefetch([b"n"]) == 1  # a read of "41" in flight
        status, fields, _ = table.offload(b"n", "incr", 1, 777)
        with DerefScope() as scope:
            after = bytes(table.get(scope, b"n").value)
        H.sleep(0.2)  # anything still in flight has landed by now
        with DerefScope() as scope:
            later = bytes(table.get(scope, b"n").value)
        return fields[0], after, later

    assert with_runtime(far_node, 4 * MiB, main) == (42, b"42", b"42")
