"""kvcache over a far tier: three real farservers, two replicas (issue 12).

Spec: `--far HOST:PORT,HOST:PORT,...` and `--far-replicas R` (R <= nodes; bad
input is a clear error). Each far item lives on R nodes; a node killed with
SIGKILL in the middle of a load costs no item written before (or after) it:
every key reads back byte-exact, never a wrong value. Verbs that change a far
item (append, prepend, incr, decr, touch, cas, delete) are not offloaded with
R > 1: the item comes home and is written back to every replica, so the
replicas never diverge. `stats far` has a row set per node, far_replicas and
far_failovers.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from kvproc import KvCache
from pymemcache.client.base import Client

from kvcache.config import parse_args
from runtime.farprocess import FarProcess


def value_of(i: int, size: int) -> bytes:
    head = b"%08d" % i
    return (head * (size // 8 + 1))[:size]


@pytest.fixture
def three_nodes():
    nodes = [FarProcess(memory_mb=128) for _ in range(3)]
    try:
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def far_arg(nodes) -> str:
    return ",".join(f"127.0.0.1:{n.port}" for n in nodes)


def stats_far(c: Client) -> dict[str, str]:
    return {
        k.decode(): v.decode() if isinstance(v, bytes) else str(v)
        for k, v in c.stats("far").items()
    }


def test_kill_9_a_node_under_load_and_every_key_reads_back(three_nodes):
    rnd = random.Random(12)
    sizes = {}
    total = 0
    while total < 40 * 10**6:  # ~10x the 4 MB heap
        i = len(sizes)
        sizes[i] = int(200 * (100 ** rnd.random()))  # 200 B .. 20 KB
        total += sizes[i]
    n = len(sizes)
    first = int(n * 0.7)  # written before the load starts
    args = ("-m", "4", "--far", far_arg(three_nodes), "--far-replicas", "2")
    with KvCache(*args, "--far-timeout", "1") as kv:
        c = Client(("127.0.0.1", kv.port), connect_timeout=5, timeout=15)
        for i in range(first):
            assert c.set(b"k%d" % i, value_of(i, sizes[i]), noreply=False)
        # the load: writers of the remaining keys, readers checking old ones; a
        # bounded amount of work each, SIGKILL to one node half-way through
        rest = list(range(first, n))
        done_at: dict[int, float] = {}
        wrong: list = []
        errors: list = []
        reads = [0]

        def writer(part):
            w = Client(("127.0.0.1", kv.port), connect_timeout=5, timeout=15)
            try:
                for i in part:
                    assert w.set(b"k%d" % i, value_of(i, sizes[i]), noreply=False)
                    done_at[i] = time.monotonic()
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                w.close()

        def reader(seed):
            r = Client(("127.0.0.1", kv.port), connect_timeout=5, timeout=15)
            rr = random.Random(seed)
            try:
                for _ in range(1500):
                    i = rr.randrange(first)
                    got = r.get(b"k%d" % i)
                    if got != value_of(i, sizes[i]):
                        wrong.append((i, None if got is None else len(got)))
                    reads[0] += 1
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                r.close()

        threads = [threading.Thread(target=writer, args=(rest[k::2],)) for k in range(2)]
        threads += [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(done_at) < len(rest) // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(done_at) >= len(rest) // 2
        three_nodes[1].kill()  # kill -9, mid-load
        killed_at = time.monotonic()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert wrong == []  # never a wrong value, and no miss: each item had a live copy
        assert reads[0] == 3 * 1500
        before = [i for i in range(n) if i < first or done_at.get(i, killed_at) < killed_at]
        assert len(before) > first
        bad = [i for i in range(n) if c.get(b"k%d" % i) != value_of(i, sizes[i])]
        assert bad == []  # every key, written before the kill or after, byte-exact
        st = c.stats()
        assert int(st[b"evacuations"]) > n // 2  # most items went far
        assert int(st[b"far_available"]) == 1
        far = stats_far(c)
        assert far["far_replicas"] == "2" and far["far_nodes"] == "3"
        assert far["far_nodes_available"] == "2"
        assert far["far:1:available"] == "0" and far["far:0:available"] == "1"
        assert far["far:1:address"] == f"127.0.0.1:{three_nodes[1].port}"
        assert int(far["far:0:items"]) > 0 and "far:1:items" not in far
        assert int(far["far:0:writes"]) + int(far["far:2:writes"]) >= int(st[b"evacuations"])
        c.close()


def test_changes_to_far_items_reach_every_replica(three_nodes):
    args = ("-m", "4", "--far", far_arg(three_nodes), "--far-replicas", "2")
    with KvCache(*args, "--far-timeout", "1") as kv:
        c = Client(("127.0.0.1", kv.port), connect_timeout=5, timeout=15)
        keys = [b"v%d" % i for i in range(40)]
        for k in keys:
            assert c.set(k, b"100", noreply=False)

        def push_far(tag: bytes):
            for i in range(700):  # 7 MB of filler through the 4 MB heap
                assert c.set(b"fill-%s-%d" % (tag, i), value_of(i, 10_000), noreply=False)

        push_far(b"a")
        assert int(c.stats()[b"local_items"]) < 700  # the v keys went far
        expect: dict[bytes, bytes | None] = {}
        for n, k in enumerate(keys):
            verb = n % 6
            if verb == 0:
                assert c.append(k, b"+a", noreply=False)
                expect[k] = b"100+a"
            elif verb == 1:
                assert c.prepend(k, b"p-", noreply=False)
                expect[k] = b"p-100"
            elif verb == 2:
                assert c.incr(k, 5) == 105
                expect[k] = b"105"
            elif verb == 3:
                assert c.decr(k, 7) == 93
                expect[k] = b"93 "  # memcached pads a shorter number in place
            elif verb == 4:
                assert c.delete(k, noreply=False)
                expect[k] = None
            else:
                _, cas = c.gets(k)
                assert c.cas(k, b"swapped", cas, noreply=False)
                expect[k] = b"swapped"
        assert int(c.stats()[b"offloads"]) == 0  # R = 2: nothing changed at a node
        push_far(b"b")  # the changed items go far again, to both replicas
        for node in three_nodes:  # whichever node dies, the other replica is current
            node.kill()
            time.sleep(0.3)
            got = {k: c.get(k) for k in keys}
            assert got == expect, node.port
            node.start()  # back empty; cleared by kvcache before it is used
            deadline = time.monotonic() + 10
            while stats_far(c)["far_nodes_available"] != "3" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stats_far(c)["far_nodes_available"] == "3"
            push_far(b"c%d" % node.port)  # resident copies rewritten to every replica
        c.close()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--far", "127.0.0.1:1", "--far-replicas", "2"], "more copies than far nodes"),
        (["--far-replicas", "2"], "more copies than far nodes (the embedded far node)"),
        (["--far", "none", "--far-replicas", "2"], "more copies than far nodes (--far none)"),
        (["--far", "a:1,b:2", "--far-replicas", "3"], "more copies than far nodes (2 far nodes)"),
        (["--far", "a:1,b:2", "--far-replicas", "0"], "--far-replicas must be at least 1"),
        (["--far", "a:1,b:2", "--far-replicas", "two"], "--far-replicas takes a number"),
        (["--far", "a:1,a:1"], "--far lists a:1 twice"),
        (["--far", "a:1,b"], "--far takes HOST:PORT[,HOST:PORT...]"),
        (["--far", "a:1,b:70000"], "(ports 1-65535)"),
        (["--far", "a:1,"], "--far takes HOST:PORT[,HOST:PORT...]"),
    ],
)
def test_bad_far_options_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_far_options_parse():
    s = parse_args(["--far", "10.0.0.1:11311, 10.0.0.2:11312", "--far-replicas", "2"])
    assert s.far_nodes == [("10.0.0.1", 11311), ("10.0.0.2", 11312)] and s.far_replicas == 2
    one = parse_args(["--far", "10.0.0.1:11311"])
    assert one.far_nodes == [("10.0.0.1", 11311)] and one.far_replicas == 1
    assert parse_args([]).far_nodes is None


def test_a_partitioned_node_rejoins_cleared_and_nothing_stale_is_read(far_hosts):
    """A node cut off the network (it keeps running, with copies that miss the
    writes and deletes made meanwhile) is cleared when the link returns: every
    key then reads its last value, never the copy the node held before."""
    hosts = [far_hosts() for _ in range(3)]
    nodes = [h.start_farserver(memory_mb=128) for h in hosts]
    args = ("-m", "4", "--far", ",".join(n.address for n in nodes), "--far-replicas", "2")
    with KvCache(*args, "--far-timeout", "1") as kv:
        c = Client(("127.0.0.1", kv.port), connect_timeout=10, timeout=10)
        n = 600  # 6 MB through the 4 MB heap: the first ones go far
        want: dict[int, bytes | None] = {}
        for i in range(n):
            want[i] = value_of(i, 10_000)
            assert c.set(b"k%d" % i, want[i], noreply=False)
        assert int(c.stats()[b"local_items"]) < n
        hosts[0].cut()
        for i in range(0, 150):  # far keys: overwritten or deleted while node 0 is away
            if i % 3 == 2:
                c.delete(b"k%d" % i, noreply=False)
                want[i] = None
            else:
                want[i] = value_of(i + 10_000, 10_000)
                assert c.set(b"k%d" % i, want[i], noreply=False)
        deadline = time.monotonic() + 15
        while stats_far(c)["far:0:available"] != "0" and time.monotonic() < deadline:
            c.get(b"k%d" % random.randrange(150, n))  # far reads notice the cut
        assert stats_far(c)["far:0:available"] == "0"
        for i in range(n, n + 600):  # push the new values far: to the live replicas only
            assert c.set(b"f%d" % i, value_of(i, 10_000), noreply=False)
        hosts[0].heal()
        deadline = time.monotonic() + 15
        while stats_far(c)["far:0:available"] != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        far = stats_far(c)
        assert far["far:0:available"] == "1" and int(far["far_clears"]) >= 1
        got = {i: c.get(b"k%d" % i) for i in range(n)}
        wrong = [
            (i, "miss" if got[i] is None else "old" if got[i] == value_of(i, 10_000) else "?")
            for i in range(n)
            if got[i] != want[i]
        ]
        assert wrong == []  # the new value or the delete, never node 0's old copy
        c.close()


def test_nodes_that_fill_up_evict_and_never_serve_a_stale_copy():
    """Far nodes too small for the data evict on their own, each its own way:
    with two replicas, a read answers the last value stored or a miss."""
    nodes = [FarProcess(memory_mb=6) for _ in range(3)]
    try:
        args = ("-m", "4", "--far", far_arg(nodes), "--far-replicas", "2", "--far-timeout", "2")
        with KvCache(*args) as kv:
            c = Client(("127.0.0.1", kv.port), connect_timeout=10, timeout=15)
            rnd = random.Random(7)
            want: dict[int, bytes | None] = {}
            n = 3000
            for step in range(9000):  # ~40 MB of sets over 3,000 keys (and deletes)
                i = rnd.randrange(n)
                if rnd.random() < 0.1:
                    c.delete(b"k%d" % i, noreply=False)
                    want[i] = None
                else:
                    want[i] = value_of(step, 5_000)
                    assert c.set(b"k%d" % i, want[i], noreply=False)
            time.sleep(2.5)  # the gone logs are polled every second
            got = {i: c.get(b"k%d" % i) for i in want}
            stale = [i for i, v in got.items() if v is not None and v != want[i]]
            assert stale == []  # the last value or a miss, never an older one
            hits = sum(v is not None for v in got.values())
            assert hits > len(want) // 4  # and the cache still holds a good part
            st = c.stats()
            assert int(st[b"evictions"]) > 0  # the nodes did evict
            assert int(stats_far(c)["table_far_gone"]) > 0  # and said so
            c.close()
    finally:
        for node in nodes:
            node.stop()


def wait_for(cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_lost_node_is_rereplicated_so_a_second_loss_loses_nothing(three_nodes):
    """Kill one of three nodes (R = 2): the items that lost a copy get one on
    the node left, so killing a second node loses nothing; a node restarted
    empty is refilled, so killing the last original one loses nothing either."""
    args = ("-m", "4", "--far", far_arg(three_nodes), "--far-replicas", "2")
    with KvCache(*args, "--far-timeout", "1") as kv:
        c = Client(("127.0.0.1", kv.port), connect_timeout=10, timeout=15)
        n = 4000  # 40 MB, ten times the 4 MB heap: most items are far only
        for i in range(n):
            assert c.set(b"k%d" % i, value_of(i, 10_000), noreply=False)
        assert int(c.stats()[b"local_items"]) < n // 5

        def settled(up: str):
            far = stats_far(c)
            return (
                far["far_nodes_available"] == up
                and far["far_sweep"] == "idle"
                and int(far["far_sweeps"]) > sweeps
                and far["far_under_replicated"] == "0"
            )

        def all_read_back() -> list:
            return [i for i in range(n) if c.get(b"k%d" % i) != value_of(i, 10_000)]

        sweeps = int(stats_far(c)["far_sweeps"])
        three_nodes[1].kill()
        wait_for(lambda: settled("2"), 60, "no re-replication after node 1 was lost")
        far = stats_far(c)
        assert int(far["far_rereplications"]) > n // 4  # about 2/3 of the items lost a copy
        sweeps = int(far["far_sweeps"])
        three_nodes[0].kill()  # the second loss: node 2 must now hold everything
        wait_for(lambda: stats_far(c)["far_nodes_available"] == "1", 10, "node 0 not seen gone")
        assert all_read_back() == []
        wait_for(lambda: settled("1"), 60, "no sweep after node 0 was lost")
        sweeps = int(stats_far(c)["far_sweeps"])
        three_nodes[1].start()  # back empty: refilled from node 2
        wait_for(lambda: settled("2"), 60, "node 1 not refilled")
        assert int(stats_far(c)["far:1:items"]) > n // 2
        three_nodes[2].kill()  # the last of the original copies
        wait_for(lambda: stats_far(c)["far_nodes_available"] == "1", 10, "node 2 not seen gone")
        assert all_read_back() == []  # all from node 1's refill (and the resident ones)
        c.close()


def test_one_replica_a_stand_in_copy_is_read_and_moved_home():
    """R = 1 over two nodes: an item written while its node is down goes to the
    other (a stand-in); when its node is back (empty) the stand-in's copy is the
    one read, then moved home, so losing the stand-in after that loses nothing."""
    nodes = [FarProcess(memory_mb=64) for _ in range(2)]
    try:
        args = ("-m", "4", "--far", far_arg(nodes), "--far-timeout", "1")
        with KvCache(*args) as kv:
            c = Client(("127.0.0.1", kv.port), connect_timeout=10, timeout=15)

            def fill(tag: bytes) -> None:
                for i in range(700):  # 7 MB through the 4 MB heap: earlier keys go far
                    assert c.set(b"fill-%s-%d" % (tag, i), value_of(i, 10_000), noreply=False)

            keys = [b"x%d" % i for i in range(200)]
            for k in keys:
                assert c.set(k, b"old-" + k, noreply=False)
            fill(b"a")
            nodes[0].kill()
            wait_for(lambda: stats_far(c)["far:0:available"] == "0", 10, "node 0 not seen gone")
            for k in keys:
                assert c.set(k, b"new-" + k, noreply=False)
            fill(b"b")  # the new values go far: all to node 1, half as stand-in copies
            assert int(stats_far(c)["far_stray_holders"]) == 1
            nodes[0].start()  # empty
            wait_for(lambda: stats_far(c)["far:0:available"] == "1", 10, "node 0 not back")
            got = {k: c.get(k) for k in keys}
            assert got == {k: b"new-" + k for k in keys}  # never a miss, never the old value
            wait_for(
                lambda: (
                    stats_far(c)["far_stray_holders"] == "0" and stats_far(c)["far_sweep"] == "idle"
                ),
                60,
                "the stand-in's copies were not moved home",
            )
            nodes[1].kill()  # the stand-in: only what went home is left
            wait_for(lambda: stats_far(c)["far:1:available"] == "0", 10, "node 1 not seen gone")
            home = [k for k in keys if c.get(k) == b"new-" + k]
            assert len(home) > len(keys) // 4  # node 0's share came home
            wrong = [k for k in keys if c.get(k) not in (None, b"new-" + k)]
            assert wrong == []
            c.close()
    finally:
        for n in nodes:
            n.stop()


def test_random_ops_with_node_kills_and_restarts_match_a_model(three_nodes):
    """A random stream of sets, appends, incrs, deletes and gets, with one of the
    three nodes (R = 2) killed and restarted empty now and then (the next kill
    once re-replication settled): every get answers the model's value, no miss."""
    rnd = random.Random(2026)
    args = ("-m", "4", "--far", far_arg(three_nodes), "--far-replicas", "2")
    with KvCache(*args, "--far-timeout", "1") as kv:
        c = Client(("127.0.0.1", kv.port), connect_timeout=10, timeout=15)
        model: dict[bytes, bytes] = {}
        keys = [b"r%d" % i for i in range(1500)]
        wrong: list = []
        misses: list = []
        down: int | None = None
        sweeps = -1

        def settled_past(n: int) -> bool:
            far = stats_far(c)
            return (
                int(far["far_sweeps"]) > n
                and far["far_sweep"] == "idle"
                and far["far_under_replicated"] == "0"
            )

        for step in range(6000):
            if step % 1000 == 500:  # a kill, or the restart of the killed node
                # each waits for the sweep the last change started, so that every
                # item has both copies again before the next node goes
                wait_for(lambda n=sweeps: settled_past(n), 60, "re-replication did not settle")
                sweeps = int(stats_far(c)["far_sweeps"])
                if down is None:
                    down = rnd.randrange(3)
                    three_nodes[down].kill()
                    gone = f"far:{down}:available"
                    wait_for(lambda k=gone: stats_far(c)[k] == "0", 10, "no loss seen")
                else:
                    three_nodes[down].start()
                    back = f"far:{down}:available"
                    wait_for(lambda k=back: stats_far(c)[k] == "1", 10, "no rejoin")
                    down = None
            k = rnd.choice(keys)
            op = rnd.random()
            if op < 0.35:
                v = value_of(step, rnd.choice((100, 3000, 12_000)))
                assert c.set(k, v, noreply=False)
                model[k] = v
            elif op < 0.45:
                if c.append(k, b"+%d" % step, noreply=False):
                    model[k] = model[k] + b"+%d" % step
                elif k in model:
                    misses.append((step, k, "append"))
            elif op < 0.5:
                if c.delete(k, noreply=False):
                    del model[k]
                elif k in model:
                    misses.append((step, k, "delete"))
            else:
                got = c.get(k)
                if got is None and k in model:
                    misses.append((step, k, "get"))
                elif got is not None and got != model.get(k):
                    wrong.append((step, k))
        assert wrong == []
        assert misses == []  # one node down at a time, refilled before the next kill
        final = {k: c.get(k) for k in keys}
        assert final == {k: model.get(k) for k in keys}
        assert int(stats_far(c)["far_rereplications"]) > 0
        c.close()
