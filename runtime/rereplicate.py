"""Re-replication: far objects that lost a copy get one again, in the background.

An object's replica set is the first R live nodes of its rank (runtime/fartier.py):
when the live nodes change, a set may gain a node that lacks the object's copy
(a stand-in for a node that went down, or a node that came back cleared), and
a node may hold copies it is no longer a replica of (strays, once the node it
stood in for is back). A sweep puts every object where its replica set is now:

    for each live node n, for each structure whose owner can rereplicate():
        SCAN n's part in pages (stable cursors: every object that lives
        through the sweep is seen)
        an object needs seeing to if its replica set now holds a node that
        may lack it (not a replica at the last settled point, or cleared
        since), or does not hold n (a stray); of the nodes that surely hold
        it, only the first sees to it (no copy twice)
        owner.rereplicate(names, done, n): the owner brings each one's copies
        to its replica set but n (writing n again would put the object back
        ahead of the cursor), through the paths every write takes: a client
        write racing the copy wins, since the copy is read through the
        owner's far read, whose result a change made meanwhile marks stale
        a stray on n whose copy is seen to is removed from n

A sweep starts shortly after every change of the live nodes, is paced to
`rate` bytes of scanned objects per second, and starts over when the nodes
change again during it. One that sees every node to the end with nothing
failed settles: its live nodes become the reference for the next change, and
with every node live no node holds strays any more (writes stop removing
copies from them). A failed copy (a node that did not answer) retries the
sweep after RETRY_AFTER seconds.

Stats: far_rereplications (objects seen to), far_rereplicate_bytes (bytes
scanned), far_under_replicated (objects the running sweep found lacking a copy
and has not seen to yet: a lower bound while it runs, 0 once settled),
far_rereplicate_failures, far_sweeps (settled), far_sweep (idle, running or
waiting).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from protocol.far import Op, Status, decode_scan_reply, encode_name, encode_scan
from runtime import hub as _hub
from runtime.errors import FarMemoryError

if TYPE_CHECKING:
    from runtime.fartier import FarTier

__all__ = ["REREPLICATE_RATE", "Rereplicator", "ignore_reply"]

log = logging.getLogger("runtime.rereplicate")

REREPLICATE_RATE = 64 * 1024 * 1024  # bytes of scanned objects per second, by default
SCAN_ITEMS = 512  # objects per SCAN reply, at most
SCAN_BYTES = 1024 * 1024  # bytes per SCAN reply, at most
START_DELAY = 0.05  # seconds from a change to the sweep (changes come in bursts)
RETRY_AFTER = 1.0  # seconds before a sweep that failed somewhere runs again


class Rereplicator:
    """The tier's background sweep (module docstring). Runs in a green thread."""

    def __init__(self, tier: FarTier, rate: float = REREPLICATE_RATE):
        if rate <= 0:
            raise ValueError(f"re-replication rate must be positive, not {rate}")
        self.tier = tier
        self.rate = rate  # bytes/s
        self.ref_up: frozenset[int] | None = None  # live nodes at the last settled point
        self.cleared: set[int] = set()  # nodes that came back empty since then
        self.epoch = 0  # bumped by every change of the live nodes
        self.state = "idle"
        self._timer: Any = None
        self._thread: Any = None
        self.stopped = False
        self.copies = 0  # objects seen to
        self.scanned_bytes = 0
        self.pending = 0  # found lacking, not yet seen to (this sweep)
        self.failures = 0
        self.sweeps = 0  # settled sweeps

    # -- triggers (hub) ----------------------------------------------------------------

    def settle(self) -> None:
        """Placement is fixed: the nodes live now hold everything written so far."""
        self.ref_up = self._up()

    def node_cleared(self, i: int) -> None:
        """Node i rejoins empty: objects it is a replica of must be copied to it."""
        self.cleared.add(i)

    def changed(self) -> None:
        """The live nodes changed: sweep soon (again, if one is running)."""
        if self.ref_up is None or self.stopped:
            return
        self.epoch += 1
        if self._thread is None and self._timer is None:
            self._timer = self.tier.hub.loop.call_later(START_DELAY, self._start)

    def stop(self) -> None:
        """No more sweeps (the tier closes); a running one ends at its next step."""
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _up(self) -> frozenset[int]:
        return frozenset(i for i, m in enumerate(self.tier.members_) if m.available)

    def _needed(self) -> bool:
        """Whether a sweep has work: the live nodes changed, or strays can go home now."""
        up = self._up()
        if up != self.ref_up or self.cleared:
            return True
        return len(up) == len(self.tier.members_) and any(self.tier.strays)

    def _start(self) -> None:
        self._timer = None
        if self.stopped or self._thread is not None or not self._needed():
            return
        self._thread = _hub.spawn(self._main)

    # -- the sweep (green thread) --------------------------------------------------------

    def _main(self) -> None:
        try:
            while not self.stopped and self._needed():
                epoch = self.epoch
                up = self._up()
                cleared = set(self.cleared)
                self.state = "running"
                self.pending = 0
                clean = self._sweep(epoch)
                self.pending = 0
                if self.stopped:
                    break
                if self.epoch != epoch:
                    _hub.sleep(START_DELAY)  # the nodes changed under it: start over
                    continue
                if clean:
                    self._settled(up, cleared)
                    continue
                self.state = "waiting"
                _hub.sleep(RETRY_AFTER)
        except Exception:  # a bug: never let it take the tier down, say so
            log.exception("far re-replication sweep failed")
        finally:
            self.state = "idle"
            self._thread = None

    def _settled(self, up: frozenset[int], cleared: set[int]) -> None:
        self.sweeps += 1
        self.ref_up = up
        self.cleared -= cleared
        if len(up) == len(self.tier.members_):
            strays = self.tier.strays
            for i in range(len(strays)):
                strays[i] = False
        log.info(
            "far re-replication settled over %d of %d nodes: %d objects seen to so far",
            len(up),
            len(self.tier.members_),
            self.copies,
        )

    def _sweep(self, epoch: int) -> bool:
        """One pass over every live node; True if nothing failed. May park."""
        tier = self.tier
        clean = True
        started = time.monotonic()
        budget = self.scanned_bytes  # paced from here
        for n, member in enumerate(tier.members_):
            for st in list(tier.structures):
                owner = st.owner
                if not hasattr(owner, "rereplicate"):
                    continue
                cursor = 0
                while True:
                    if self.stopped or self.epoch != epoch:
                        return False
                    part = st.parts[n]
                    if not (member.available and part.ds):
                        break  # went down: the epoch moved, or will
                    try:
                        status, body = member.call(
                            Op.SCAN, part.ds, encode_scan(cursor, SCAN_ITEMS, SCAN_BYTES)
                        )
                    except FarMemoryError:  # down or timed out: the epoch moves, or will
                        status = None
                    if status != Status.OK:
                        clean = False
                        break
                    cursor, entries = decode_scan_reply(body)
                    size = sum(len(e[0]) + len(e[4]) for e in entries)
                    self.scanned_bytes += size
                    if self.epoch != epoch:
                        return False
                    if not self._see_to(n, st, entries):
                        clean = False
                    if cursor == 0:
                        break
                    ahead = started + (self.scanned_bytes - budget) / self.rate - time.monotonic()
                    if ahead > 0:
                        _hub.sleep(ahead)
        return clean

    def _see_to(self, n: int, st: Any, entries: list) -> bool:
        """Have the owner see to the entries of node n that need it; strays leave n. May park."""
        tier = self.tier
        r = tier.replicas
        ref = self.ref_up or frozenset()
        cleared = self.cleared
        todo = []
        for entry in entries:
            name = bytes(entry[0])
            rank = tier.ranking(st.ds, name)
            now = tier._holders(st, rank)[0]
            if n in now:
                # nodes that hold it surely (replicas since the last settled point):
                # the first of them is the one source, and a copy is due only if
                # another replica may lack it
                was = [i for i in rank if i in ref][:r]
                sure = [i for i in now if i in was and i not in cleared]
                if (sure and sure[0] != n) or len(sure) == len(now):
                    continue
            todo.append(name)  # a copy due, or a stray on n to move home
        if not todo:
            return True
        self.pending += len(todo)
        waiter = _hub.Waiter(tier.hub)
        st.owner.rereplicate(todo, waiter.switch, n)
        results = waiter.get()
        ok = True
        part = st.parts[n]
        for name in todo:
            self.pending -= 1
            if not results.get(name, False):
                ok = False
                self.failures += 1
                continue
            self.copies += 1
            if n not in tier.replicas_of(st.ds, name) and tier.members_[n].available and part.ds:
                tier.members_[n].submit(Op.REMOVE, part.ds, encode_name(name), ignore_reply)
        return ok

    def stats(self) -> dict[str, Any]:
        """The sweep's counters (module docstring)."""
        return {
            "far_rereplications": self.copies,
            "far_rereplicate_bytes": self.scanned_bytes,
            "far_under_replicated": self.pending,
            "far_rereplicate_failures": self.failures,
            "far_sweeps": self.sweeps,
            "far_sweep": self.state,
        }


def ignore_reply(status: Any, body: Any) -> None:
    """A stray copy's REMOVE: any outcome will do (no answer: the node rejoins cleared)."""
