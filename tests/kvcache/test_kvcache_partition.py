"""kvcache with its far node cut off the network: groundwork for issue 12.

Spec (issue 12): "A partition test with network namespaces (`ip netns`, veth
pairs: far nodes as their own hosts; `ip link set ... down` cuts one off):
the cut-off node counts as down within the far timeout, and rejoins when the
link returns, with no stale read."

Today there is one far node. It runs on a host of its own (a namespace,
tests/netns.py); kvcache runs on 127.0.0.1 with `--far ADDR:PORT` over the
veth pair. Unlike a crash, a cut leaves the node running with every copy it
holds, so when the link returns it serves them again: a key changed or
deleted during the cut must never read back its old value. The scenario runs
once per module (`partition`) and records what it saw; each test asserts one
property of that record:

    fill 600 x 10 KB through a 4 MB heap (the first ~200 go far)
    read 20 far keys back (far hits)
    cut  -> 4 readers get far keys; stats polled until far_available is 0
         -> overwrite 50 far keys, delete 20 (NOT_FOUND while their only
            copy is out of reach, as the README says), store 500 more: with
            the node out of reach the heap makes room by evicting, so the
            new values of the overwritten keys leave local memory and the
            node's old copies are all that is left of them
         -> the link stays down 3 s in all
    heal -> stats polled until far_available is 1
         -> every key read twice (around a second round of overwrites):
            each answer is the last value stored for it, or a miss

A lone client (`lone`) is the other case: far keys read one at a time, so
requests time out one after another rather than together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import netns
import pytest
from kvproc import KvCache
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

FAR_TIMEOUT = 2.0  # kvcache --far-timeout, s: long enough that twice it is no jitter
SLACK = 1.0  # s allowed on top (the 0.25 s timeout check, 2 shared busy cores)
N = 600  # keys k0..k599
FILL = 500  # keys k600..k1099, stored while cut
SIZE = 10_000  # bytes per value: 6 MB through a 4 MB heap
CHECKED_BEFORE = range(0, 20)  # far keys read back before the cut
READ_DURING = range(20, 200)  # far keys read while cut (readers split them)
OVERWRITTEN = range(20, 70)  # far keys set again while cut
DELETED = range(70, 90)  # far keys deleted while cut
UNTOUCHED_FAR = range(90, 200)  # far keys nobody changes
OVERWRITTEN_AFTER = range(100, 150)  # set again once healed
READERS = 4  # concurrent connections reading far keys during the cut
CUT_SECONDS = 3.0  # the link stays down at least this long
WATCH = 3 * FAR_TIMEOUT + 3.0  # s to watch for the node going down (beyond the bound)
REJOIN_WATCH = 20.0  # s to watch for it coming back
# s after heal() it must be seen up again: a PING probe's round (timeout + 0.25 s) at most,
# plus TCP's retransmission; seen: 0.2 s after a 3 s cut, 0.9 s after a 25 s one
REJOIN_BOUND = FAR_TIMEOUT + 3.0


def value(i: int, gen: int) -> bytes:
    """Item i's value of generation `gen`: distinct, checkable."""
    head = b"k%d gen %d|" % (i, gen)
    return (head * (SIZE // len(head) + 1))[:SIZE]


def client(port: int) -> Client:
    """A pymemcache client whose every call is bounded (10 s)."""
    return Client(("127.0.0.1", port), connect_timeout=10, timeout=10)


def stats(c: Client, *groups: str) -> dict[str, str]:
    """The stats of `groups` ("" for the general ones), as text."""
    out = {}
    for group in groups:
        st = c.stats(group) if group else c.stats()
        out.update(
            (k.decode(), v.decode() if isinstance(v, bytes) else str(v)) for k, v in st.items()
        )
    return out


def stat(c: Client, name: str, group: str = "") -> str:
    """One stat's value, as text."""
    return stats(c, group)[name]


@dataclass
class Record:
    """What the scenario saw."""

    far_items_before: int = 0  # stats far_items once filled
    far_hits_before: int = 0  # far_hits after reading CHECKED_BEFORE back
    hits_before: int = 0  # CHECKED_BEFORE keys that read back right
    cut_gets: list[float] = field(default_factory=list)  # s per get while cut
    cut_hits: int = 0  # gets answered with a value while cut
    reader_errors: list[str] = field(default_factory=list)
    down_after: float | None = None  # s from cut() to far_available 0 (None: not seen)
    down_stats: dict[str, str] = field(default_factory=dict)  # stats once down
    set_replies: list[str] = field(default_factory=list)  # of OVERWRITTEN while cut
    delete_replies: list[bool] = field(default_factory=list)  # of DELETED while cut
    up_after: float | None = None  # s from heal() to far_available 1 (None: not seen)
    up_stats: dict[str, str] = field(default_factory=dict)  # stats once back
    untouched_hits: int = 0  # UNTOUCHED_FAR keys read back after heal
    fill_replies: list[str] = field(default_factory=list)  # of the FILL keys, while cut
    overwritten_misses: int = 0  # OVERWRITTEN keys missed after heal: only a stale copy left
    wrong: list[tuple] = field(default_factory=list)  # (phase, key, stale/wrong, got, want)


class Latest:
    """The last value stored for each key; what a get may answer (that, or a miss)."""

    def __init__(self) -> None:
        self.values: dict[int, bytes | None] = {}
        self.older: dict[int, list[bytes]] = {}

    def stored(self, i: int, v: bytes | None) -> None:
        """Key i now holds v (None: deleted)."""
        old = self.values.get(i)
        if old is not None:
            self.older.setdefault(i, []).append(old)
        self.values[i] = v

    def check(self, record: Record, phase: str, i: int, got: bytes | None) -> None:
        """Record a get that answered neither a miss nor the last value stored."""
        want = self.values.get(i)
        if got is not None and got != want:
            what = "stale" if got in self.older.get(i, []) else "wrong"
            record.wrong.append((phase, i, what, got[:24], want[:24] if want else None))


def poll(c: Client, name: str, want: str, limit: float, since: float) -> float | None:
    """Seconds from `since` until stats `name` reads `want` (polled every 0.1 s), or None."""
    while time.monotonic() - since < limit:
        if stat(c, name) == want:
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def quiesce(c: Client, limit: float = 10.0) -> None:
    """Wait until no far request is in flight and the evacuator has stopped (two polls alike).

    Write-backs still in flight at the cut would time out together with the
    first far read and stall the node at once: what a test sees would depend
    on how busy the machine was.
    """
    since = time.monotonic()
    last = None
    while time.monotonic() - since < limit:
        st = stats(c, "far")
        now = (st["far_outstanding"], st["evacuations"], st["far_writes"])
        if now == last and now[0] == "0":
            return
        last = now
        time.sleep(0.2)
    raise AssertionError(f"far traffic did not settle in {limit} s: {last}")


def read_all(c: Client, latest: Latest, record: Record, phase: str) -> dict[int, bytes | None]:
    """Get every key (50 per request); check each answer; the answers."""
    out: dict[int, bytes | None] = {}
    for start in range(0, N + FILL, 50):
        keys = [f"k{i}" for i in range(start, min(start + 50, N + FILL))]
        got = c.get_many(keys)
        for key in keys:
            i = int(key[1:])
            out[i] = got.get(key)
            latest.check(record, phase, i, out[i])
    return out


def run(host: netns.FarHost) -> Record:
    """The scenario of the module docstring; what it saw."""
    record = Record()
    latest = Latest()
    node = host.start_farserver(memory_mb=64)
    with KvCache("-m", "4", "--far", node.address, "--far-timeout", str(FAR_TIMEOUT)) as kv:
        c = client(kv.port)
        assert poll(c, "far_available", "1", 10.0, time.monotonic()) is not None
        for i in range(N):
            assert c.set(f"k{i}", value(i, 0), noreply=False)
            latest.stored(i, value(i, 0))
        record.far_items_before = int(stat(c, "far_items"))
        for i in CHECKED_BEFORE:
            got = c.get(f"k{i}")
            latest.check(record, "before", i, got)
            record.hits_before += got is not None
        record.far_hits_before = int(stat(c, "far_hits"))
        quiesce(c)

        cut_at = time.monotonic()
        host.cut()
        lock = threading.Lock()

        def reader(part: list[int]) -> None:
            rc = client(kv.port)
            try:
                for i in part:
                    t0 = time.monotonic()
                    got = rc.get(f"k{i}")
                    elapsed = time.monotonic() - t0
                    with lock:
                        record.cut_gets.append(elapsed)
                        record.cut_hits += got is not None
                        latest.check(record, "cut", i, got)
                    if time.monotonic() - cut_at > CUT_SECONDS:
                        break
            except (MemcacheError, OSError) as exc:  # a hung get times out here
                record.reader_errors.append(repr(exc))
            finally:
                rc.close()

        keys = list(READ_DURING)
        threads = [
            threading.Thread(target=reader, args=(keys[k::READERS],)) for k in range(READERS)
        ]
        for t in threads:
            t.start()
        record.down_after = poll(c, "far_available", "0", WATCH, cut_at)
        for t in threads:
            t.join(30)
        record.down_stats = stats(c, "", "far")
        for i in OVERWRITTEN:
            try:
                record.set_replies.append(str(c.set(f"k{i}", value(i, 1), noreply=False)))
                latest.stored(i, value(i, 1))
            except MemcacheError as exc:
                record.set_replies.append(repr(exc))
                latest.stored(i, None)  # a failed set drops the old item, as memcached's does
            latest.check(record, "cut", i, c.get(f"k{i}"))
        for i in DELETED:
            deleted = c.delete(f"k{i}", noreply=False)
            record.delete_replies.append(deleted)
            if deleted:
                latest.stored(i, None)
            latest.check(record, "cut", i, c.get(f"k{i}"))
        for i in range(N, N + FILL):
            try:
                record.fill_replies.append(str(c.set(f"k{i}", value(i, 0), noreply=False)))
                latest.stored(i, value(i, 0))
            except MemcacheError as exc:
                record.fill_replies.append(repr(exc))
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))

        healed_at = time.monotonic()
        host.heal()
        record.up_after = poll(c, "far_available", "1", REJOIN_WATCH, healed_at)
        record.up_stats = stats(c, "", "far")
        got = read_all(c, latest, record, "healed")
        record.untouched_hits = sum(got[i] is not None for i in UNTOUCHED_FAR)
        record.overwritten_misses = sum(got[i] is None for i in OVERWRITTEN)
        for i in OVERWRITTEN_AFTER:
            assert c.set(f"k{i}", value(i, 2), noreply=False)
            latest.stored(i, value(i, 2))
        read_all(c, latest, record, "healed, overwritten again")
        c.close()
    return record


@dataclass
class Lone:
    """What one client reading far keys one at a time saw while cut."""

    gets: list[tuple[float, float, bool]] = field(default_factory=list)  # (start, s, hit)
    wrong: int = 0  # gets that answered another value
    down_after: float | None = None  # s from cut() to the first get answered at once
    stalls: int = 0  # stats far_stalls once healed


def run_lone(host: netns.FarHost) -> Lone:
    """Fill as `run` does, cut, and read far keys one at a time for up to WATCH s."""
    lone = Lone()
    node = host.start_farserver(memory_mb=64)
    with KvCache("-m", "4", "--far", node.address, "--far-timeout", str(FAR_TIMEOUT)) as kv:
        c = client(kv.port)
        assert poll(c, "far_available", "1", 10.0, time.monotonic()) is not None
        for i in range(N):
            assert c.set(f"k{i}", value(i, 0), noreply=False)
        quiesce(c)
        cut_at = time.monotonic()
        host.cut()
        for i in READ_DURING:
            start = time.monotonic() - cut_at
            got = c.get(f"k{i}")
            elapsed = time.monotonic() - cut_at - start
            lone.gets.append((start, elapsed, got is not None))
            lone.wrong += got not in (None, value(i, 0))
            if got is None and elapsed < 0.2:  # failed at once: the node counts as down
                lone.down_after = start
                break
            if start > WATCH:
                break
        host.heal()
        assert poll(c, "far_available", "1", REJOIN_WATCH, time.monotonic()) is not None
        lone.stalls = int(stat(c, "far_stalls", "far"))
        c.close()
    return lone


@pytest.fixture(scope="module")
def lone():
    """The lone client's record (run once for the module); skips without root or `ip netns`."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns.FarHost() as host:
        yield run_lone(host)


@pytest.fixture(scope="module")
def partition():
    """The scenario's record (run once for the module); skips without root or `ip netns`."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns.FarHost() as host:
        yield run(host)


def test_items_went_far_and_came_back_before_the_cut(partition):
    assert partition.far_items_before >= 200
    assert partition.hits_before == len(CHECKED_BEFORE)
    assert partition.far_hits_before >= len(CHECKED_BEFORE)


def test_far_gets_answer_within_the_far_timeout_while_cut(partition):
    assert partition.reader_errors == []
    assert len(partition.cut_gets) >= READERS
    assert max(partition.cut_gets) <= FAR_TIMEOUT + SLACK


def test_the_cut_off_node_counts_as_down_within_the_far_timeout(partition):
    assert partition.down_after is not None, "far_available never dropped to 0"
    assert partition.down_after <= FAR_TIMEOUT + SLACK
    st = partition.down_stats
    assert st["far_available"] == "0"
    assert st["far_state"] in ("stalled", "down")
    assert st["far_items"] == "0"  # nothing describes an unavailable node
    assert int(st["far_items_unreachable"]) > 0


def test_the_node_rejoins_when_the_link_returns(partition):
    assert partition.up_after is not None, f"not back within {REJOIN_WATCH} s"
    assert partition.up_after <= REJOIN_BOUND
    st = partition.up_stats
    assert st["far_state"] == "up"
    assert st["far_resets"] == "0"  # the same node instance, with its copies
    assert int(st["far_items"]) > 0


def test_untouched_far_items_are_served_again_after_the_cut(partition):
    assert partition.untouched_hits >= len(UNTOUCHED_FAR) // 2


def test_no_get_ever_answers_anything_but_the_last_value_stored(partition):
    assert set(partition.set_replies) == {"True"}, partition.set_replies
    assert set(partition.fill_replies) == {"True"}, sorted(set(partition.fill_replies))
    # the sequence did leave keys whose only far copy was the old value
    assert partition.overwritten_misses > 0
    assert partition.wrong == []


def test_a_lone_client_reads_misses_never_wrong_values_while_cut(lone):
    assert lone.wrong == 0
    assert not any(hit for _, _, hit in lone.gets)


def test_a_lone_clients_far_gets_answer_within_the_far_timeout_while_cut(lone):
    assert max(s for _, s, _ in lone.gets) <= FAR_TIMEOUT + SLACK, lone.gets


def test_a_lone_client_sees_the_node_down_within_the_far_timeout(lone):
    assert lone.down_after is not None, lone.gets
    assert lone.stalls == 1
    assert lone.down_after <= FAR_TIMEOUT + SLACK, lone.gets
