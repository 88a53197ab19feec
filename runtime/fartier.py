"""Several far nodes as one far memory: placement, replication, read failover.

    data structures --submit_named(op, ds, name)--> FarTier --+--> node 0 (a FarClient)
                                                               +--> node 1
                    placement: runtime.placement.place(name)   +--> node 2

A FarTier is what the Manager holds when kvcache is given several `--far`
nodes; it presents what a FarClient presents (register, submit_named,
call_named, broadcast, available, stats, start/close/kick/wait_ready), so the
structures, the evacuator and kvcache do not care how many nodes there are.
One node is a plain FarClient: the single-node path has no tier in it.

Placement: an object's rank is every node, ordered by weighted rendezvous
hashing (runtime/placement.py) of its far name: a hash table's key; for
boxes and arrays the tier's structure handle and the object's index. Each
node weighs its memory limit (STATS `limit_bytes`), frozen when the tier
first becomes available (once every node answered, or `freeze_wait` seconds
after start() with at least one; a node not heard from weighs the mean of
the others), so an object's rank never changes while the process runs.
Its home is the first R (`replicas`) of its rank; its replica set is the
first R *live* nodes of its rank: with a home node down, the next live one
stands in for it.

A stand-in holds copies of objects it is not home to (strays): once the
home is back those are outside the replica set. So a node that took a
stand-in write is marked (`strays`), and the nodes that may hold an object
are its replica set, then the marked nodes (`_holders`):

    READ     the first live holder; a failure, a timeout or NOT_FOUND asks
             the next one inside the same request (far_failovers). The
             callback gets the first OK; else the last failure if any
             replica failed, else NOT_FOUND.
    WRITE    the replica set; a REMOVE to every other holder, so that no
             copy is left stale. OK once each replica answered and one at
             least acknowledged. A replica that gave no answer (timeout, lost
             connection) does not count: it applies the write in order behind
             everything sent to it before, or it is cleared before it is used
             again, so it holds this version or nothing and a read there
             fails over. If a replica refused while another holds (or may
             hold) the write, the callback gets (None, error) and the owner
             removes the copies (evac_unsure): a copy the runtime does not
             know of must never be read.
    REMOVE   every holder; OK if any had it; (None, error) if none
             answered OK and one gave no answer.
    COMPUTE  only with R = 1 and no marked node (can_offload), on the
             object's one replica. With R > 1 an offloaded change could
             reach one replica and not another, so the structures bring the
             object home, change it and write it back to every replica
             instead (RemHashTable.can_offload).
    broadcast (COMPUTE clear): every node. A node that gives no answer is
             dropped and rejoins cleared.

Live means connected, answering, with the structure constructed. Every node
is a FarClient with `clear_on_return`: when it comes back after being down
or stalled (a new instance or the same one after a partition, which may hold
copies that missed writes or removes) its structures are destructed and
constructed again before it is used, its mark goes, and owners hear
`on_far_node_cleared(i)` once it is up (resident objects whose far copy may
have been there become dirty, so they are written back to every replica
again). So every live copy of an object is its current version or nothing.

Re-replication (runtime/rereplicate.py): every change of the live nodes
starts a background sweep that SCANs the live nodes and has the owners copy
objects onto replica sets that lack them (`copy_named`), refill a node that
came back empty and move strays home; once a sweep settles with every node
up the marks go. A far-only object whose every copy was lost reads as a miss
(a hash table) or raises FarDataLost (boxes, arrays).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from protocol.far import (
    DsType,
    Op,
    Status,
    decode_compute,
    decode_name,
    decode_stats_reply,
    decode_write,
    encode_name,
)
from runtime import hub as _hub
from runtime.errors import FarMemoryError, FarUnavailable
from runtime.farclient import Callback, FarClient, FarReply, FarStructure
from runtime.placement import Node, node_seed, place
from runtime.rereplicate import REREPLICATE_RATE, Rereplicator, ignore_reply

__all__ = ["FarTier", "TierStructure"]

log = logging.getLogger("runtime.fartier")

_HANDLE = struct.Struct("<I")  # a box's or array's handle, before its index in placement names


class TierStructure(FarStructure):
    """A structure registered with a tier: a handle (`ds`) and its part on each node."""

    __slots__ = ("parts",)

    def __init__(self, kind: int, params: dict, owner: Any, handle: int):
        super().__init__(kind, params, owner)
        self.ds = handle  # the tier's handle, never 0: per-node ids are in parts
        self.parts: list[FarStructure] = []  # per node, in the tier's node order


class _NodeOwner:
    """Stands for a structure's owner on one node: its news go through the tier."""

    __slots__ = ("tier", "index", "owner")

    def __init__(self, tier: FarTier, index: int, owner: Any):
        self.tier = tier
        self.index = index
        self.owner = owner

    def on_far_back(self) -> None:
        """The node answers again (cleared first): the owner may retry what failed."""
        back = getattr(self.owner, "on_far_back", None)
        if back is not None:
            back()

    def on_far_cleared(self) -> None:
        """The node came back emptied: copies it held are gone (owners hear it once it is up)."""
        self.tier._node_cleared(self.index)


class _Member(FarClient):
    """One node of a tier: a FarClient that is cleared on return and reports up/down."""

    def __init__(self, tier: FarTier, index: int, host: str, port: int, **kw: Any):
        super().__init__(host, port, **kw)
        self.tier = tier
        self.index = index  # in the tier's node order
        self.clear_on_return = True

    def _came_up(self, how: str) -> None:
        super()._came_up(how)
        self.tier._member_up(self.index)

    def _went_down(self) -> None:
        super()._went_down()
        self.tier._member_down(self.index)


class _Failover(FarReply):
    """A READ over an object's replicas: the next one is asked when one fails."""

    def __init__(self, tier: FarTier, st: TierStructure, order: tuple, body: bytes, cb: Callback):
        self.tier = tier
        self.st = st
        self.order = order  # replica indexes, placement order
        self.pos = 0  # the next replica to consider
        self.tries = 0  # replicas asked so far
        self.body = body
        self.callback = cb
        self.error: Any = None  # the last failure (an exception)
        self.status: Any = None  # the last non-OK status

    def send(self) -> None:
        """Ask the next live replica, or report the outcome (hub)."""
        tier = self.tier
        while self.pos < len(self.order):
            i = self.order[self.pos]
            self.pos += 1
            if tier._live(i, self.st):
                if self.tries:
                    tier.failovers += 1  # the one asked before failed or had none
                self.tries += 1
                tier.node_reads[i] += 1
                tier.members_[i].submit(Op.READ, self.st.parts[i].ds, self.body, self)
                return
        if self.error is not None:
            self.callback(None, self.error)
        elif self.status is not None:
            self.callback(self.status, b"")
        else:
            self.callback(None, FarUnavailable("no replica of the object is available"))

    def done(self, status: Any, body: Any) -> None:
        """One replica's reply."""
        if status == Status.OK:
            self.callback(status, body)
            return
        if status is None:
            self.error = body
            self.tier.node_errors[self.order[self.pos - 1]] += 1
        else:
            self.status = status
        self.send()


class _FanOut(FarReply):
    """A WRITE or REMOVE sent to every live replica: one outcome once all replied.

    A replica that gave no answer (a timeout, a lost connection) counts for
    nothing either way: what was sent to it is applied in order behind
    everything sent before, or the node is cleared before it is used again
    (clear_on_return), so it ends up with this change or with nothing.
    """

    def __init__(self, tier: FarTier, op: int, cb: Callback):
        self.tier = tier
        self.op = op
        self.callback = cb
        self.left = 0  # replies to come
        self.ok = 0  # OK replies
        self.lost: Any = None  # the last "no answer" (an exception)
        self.status: Any = None  # the first other status

    def done(self, status: Any, body: Any) -> None:
        """One replica's reply."""
        if status == Status.OK:
            self.ok += 1
        elif status is None:
            self.lost = body
        elif self.status is None:
            self.status = status
        self.left -= 1
        if self.left == 0:
            self._report()

    def _report(self) -> None:
        if self.op == Op.REMOVE:
            if self.ok:
                self.callback(Status.OK, b"")  # it was there, and is going everywhere
            elif self.lost is not None:
                self.callback(None, self.lost)  # one may still hold it: the owner retries
            else:
                self.callback(self.status, b"")
        elif self.status is not None:
            if self.ok or self.lost is not None:
                # refused by one, held (or maybe) by another: the owner removes the copies
                name = Status(self.status).name
                self.callback(None, FarMemoryError(f"a replica refused the write: {name}"))
            else:
                self.callback(self.status, b"")
        elif self.ok:
            self.callback(Status.OK, b"")
        else:
            self.callback(None, self.lost)


class _Counted:
    """A node's reply passed on, with the node's errors counted."""

    __slots__ = ("tier", "index", "callback")

    def __init__(self, tier: FarTier, index: int, cb: Any):
        self.tier = tier
        self.index = index
        self.callback = cb

    def __call__(self, status: Any, body: Any) -> None:
        if status is None:
            self.tier.node_errors[self.index] += 1
        self.callback(status, body)


class _Broadcast:
    """A clear sent to every node; a node that gave no answer is dropped (rejoins cleared)."""

    def __init__(self, tier: FarTier, cb: Callback):
        self.tier = tier
        self.callback = cb
        self.left = 0

    def reply(self, index: int, status: Any, body: Any) -> None:
        """One node's reply (hub)."""
        if status is None and not isinstance(body, FarUnavailable):
            self.tier.members_[index].reset_connection()
        self.left -= 1
        if self.left == 0:
            self.callback(Status.OK, b"")


class FarTier(FarClient):
    """Several far nodes, each object on `replicas` of them (see the module docstring)."""

    def __init__(
        self,
        nodes: list[tuple[str, int]],
        replicas: int = 1,
        secret: bytes = b"",
        timeout: float = 2.0,
        hub: _hub.Hub | None = None,
        freeze_wait: float | None = None,
        ssl_context: Any = None,
        rereplicate_rate: float = REREPLICATE_RATE,
    ):
        if len(set(nodes)) != len(nodes):
            raise ValueError("a far node is listed twice")
        if not 0 < replicas <= len(nodes):
            raise ValueError(
                f"{replicas} replicas need at least as many far nodes, not {len(nodes)}"
            )
        super().__init__("tier", 0, secret, timeout, hub)
        self.replicas = replicas  # copies of each far object
        self.addresses = [f"{host}:{port}" for host, port in nodes]
        self.members_ = [
            _Member(
                self,
                i,
                host,
                port,
                secret=secret,
                timeout=timeout,
                hub=self.hub,
                ssl_context=ssl_context,
            )
            for i, (host, port) in enumerate(nodes)
        ]
        self.weights: list[float | None] = [None] * len(nodes)  # limit_bytes, once heard
        self.placement: list[Node] | None = None  # (seed, weight) per node, once frozen
        self.freeze_wait = timeout if freeze_wait is None else freeze_wait  # seconds
        self._deadline_passed = False
        self._freeze_timer: Any = None
        self._handles: dict[int, TierStructure] = {}
        self.failovers = 0  # reads that went on to the next replica
        self.node_reads = [0] * len(nodes)  # READs sent, per node
        self.node_writes = [0] * len(nodes)  # WRITEs sent, per node
        self.node_errors = [0] * len(nodes)  # requests that failed (no answer), per node
        # per node: it may hold copies of objects it is not home to (it stood in for a
        # node that was down); writes and removes of any object go to it too, until a
        # sweep moved them home or it was cleared
        self.strays = [False] * len(nodes)
        self._cleared_up: set[int] = set()  # came back cleared; owners told once it is up
        self.sweeper = Rereplicator(self, rate=rereplicate_rate)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Begin connecting to every node. Never parks."""
        for m in self.members_:
            m.start()
        if self._freeze_timer is None and self.placement is None and not self.closed:
            self._freeze_timer = self.hub.loop.call_later(self.freeze_wait, self._deadline)

    def kick(self) -> None:
        """Retry every down node now."""
        for m in self.members_:
            m.kick()

    def close(self) -> None:
        """Close every node's client (silently)."""
        self.closed = True
        self.sweeper.stop()
        self.available = False
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        for m in self.members_:
            m.closing = True
            m.close()

    def nodes(self) -> list:
        """The clients of every node, in the order given."""
        return list(self.members_)

    def members(self, st: FarStructure) -> list:
        """(client, that node's part of `st`) per node."""
        assert isinstance(st, TierStructure)
        return list(zip(self.members_, st.parts, strict=True))

    def replica_count(self) -> int:
        """Copies of each far object."""
        return self.replicas

    def can_offload(self) -> bool:
        """Whether an object may be changed on its node (COMPUTE): one copy, in one place.

        With R = 1 a node that stood in for another may hold an object's
        current copy while its home is back (until re-replication moved it):
        then an offloaded change could miss it.
        """
        return self.replicas == 1 and not any(self.strays)

    # -- structures ----------------------------------------------------------

    def register(self, kind: int, params: dict, owner: Any) -> TierStructure:
        """A structure constructed on every node (see FarClient.register)."""
        st = TierStructure(kind, params, owner, len(self._handles) + 1)
        st.parts = [
            m.register(kind, params, _NodeOwner(self, i, owner))
            for i, m in enumerate(self.members_)
        ]
        self.structures.append(st)
        self._handles[st.ds] = st
        return st

    def construct(self, st: FarStructure) -> int:
        """Construct `st` on every available node that lacks it; its handle. May park."""
        assert isinstance(st, TierStructure)
        for m, part in zip(self.members_, st.parts, strict=True):
            if m.available and not part.ds:
                m.construct(part)
        return st.ds

    # -- placement -------------------------------------------------------------

    def _live(self, i: int, st: TierStructure) -> bool:
        """Node i answers and holds its part of `st`."""
        return self.members_[i].available and st.parts[i].ds != 0

    def ranking(self, ds: int, name: bytes) -> tuple:
        """Every node, best first for the object `name` of structure `ds` (home: the first R)."""
        placement = self.placement
        if placement is None:
            raise FarUnavailable("far placement not settled yet")
        st = self._handles[ds]
        pname = name if st.kind == DsType.HASHTABLE else _HANDLE.pack(ds) + name
        return place(pname, placement, len(placement))

    def replicas_of(self, ds: int, name: bytes) -> tuple[int, ...]:
        """The object's current replica set: the first R live nodes of its ranking.

        With every node live that is its home (the first R); with one down,
        the next live node by rank stands in for it.
        """
        return tuple(self._holders(self._handles[ds], self.ranking(ds, name))[0])

    def first_replica(self, ds: int, name: bytes) -> int:
        """The node an object is read from first (its current primary); -1 if none is live."""
        live = self.replicas_of(ds, name)
        return live[0] if live else -1

    def _holders(self, st: TierStructure, rank: tuple) -> tuple[list, list]:
        """Live nodes that may hold a copy, in rank order: (the replica set, stray holders).

        The replica set is the first R live nodes of `rank`; the stray
        holders are the marked live nodes after them.
        """
        r = self.replicas
        strays = self.strays
        replica_set: list = []
        others: list = []
        for i in rank:
            if self._live(i, st):
                if len(replica_set) < r:
                    replica_set.append(i)
                elif strays[i]:
                    others.append(i)
        return replica_set, others

    # -- requests ------------------------------------------------------------

    def submit_named(self, op: int, ds: int, name: bytes, body: bytes, callback: Callback) -> None:
        """A request about the object `name`, to its replicas (module docstring). Never parks."""
        if not self.available:
            self.failures += 1
            callback(None, FarUnavailable("far memory unavailable"))
            return
        self.requests += 1
        st = self._handles[ds]
        rank = self.ranking(ds, name)
        replica_set, others = self._holders(st, rank)
        holders = replica_set + others
        if op == Op.READ:
            _Failover(self, st, tuple(holders), body, callback).send()
            return
        if not holders:
            self.failures += 1
            callback(None, FarUnavailable("no replica of the object is available"))
            return
        if op == Op.COMPUTE:
            if self.replicas > 1:
                raise ValueError("no offloaded op on a replicated object: replicas could diverge")
            if len(holders) > 1:  # a stray copy may be the current one: can_offload() said no
                self.failures += 1
                callback(None, FarUnavailable("the object may be on a stand-in: not offloaded"))
                return
            i = holders[0]
            self.members_[i].submit(op, st.parts[i].ds, body, _Counted(self, i, callback))
            return
        if op not in (Op.WRITE, Op.REMOVE):
            raise ValueError(f"{Op(op).name} is not a request about one object")
        fan = _FanOut(self, op, callback)
        if op == Op.REMOVE:
            fan.left = len(holders)  # all counted first: a synchronous failure can't end it early
            for i in holders:
                self.members_[i].submit(op, st.parts[i].ds, body, _Counted(self, i, fan))
            return
        self._write(st, rank, replica_set, others, name, body, fan)

    def copy_named(self, ds: int, name: bytes, body: bytes, skip: int, callback: Callback) -> None:
        """A WRITE of the object `name` to its replica set but node `skip` (re-replication).

        `skip` holds the object's current copy already: writing it there again
        would put it back ahead of the sweep's SCAN cursor. Never parks.
        """
        st = self._handles[ds]
        rank = self.ranking(ds, name)
        replica_set, others = self._holders(st, rank)
        targets = [i for i in replica_set if i != skip]
        others = [i for i in others if i != skip]
        fan = _FanOut(self, Op.WRITE, callback)
        if not targets:  # skip is the one replica: nothing to write, strays still go
            self.hub.schedule(callback, Status.OK, b"")
        self._write(st, rank, targets, others, name, body, fan)

    def _write(
        self,
        st: TierStructure,
        rank: tuple,
        targets: list,
        others: list,
        name: bytes,
        body: bytes,
        fan: _FanOut,
    ) -> None:
        """A WRITE to `targets` (of the replica set) and a REMOVE to the stray holders `others`,
        so that none goes stale; a target standing in for a home that is down is marked."""
        fan.left = len(targets)
        for i in others:
            self.members_[i].submit(Op.REMOVE, st.parts[i].ds, encode_name(name), ignore_reply)
        home = rank[: self.replicas]
        for i in targets:
            if i not in home:
                self.strays[i] = True  # a stand-in: it holds a copy its home does not
            self.node_writes[i] += 1
            self.members_[i].submit(Op.WRITE, st.parts[i].ds, body, _Counted(self, i, fan))

    def submit(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        """submit() with the object's name read from the body (submit_named spares that).

        READ, WRITE, REMOVE and COMPUTE; a COMPUTE naming no object (clear)
        goes to every node. Never parks.
        """
        if op in (Op.READ, Op.REMOVE):
            name = bytes(decode_name(body))
        elif op == Op.WRITE:
            name = bytes(decode_write(body)[0])
        elif op == Op.COMPUTE:
            name = bytes(decode_compute(body)[1])
            if not name:
                self.broadcast(op, ds, body, callback)
                return
        else:
            raise ValueError(f"{Op(op).name} goes to one node: use nodes() or members()")
        self.submit_named(op, ds, name, body, callback)

    def broadcast(self, op: int, ds: int, body: bytes, callback: Callback) -> None:
        """A request to every node (a clear); the callback gets OK. Never parks.

        A node that is down, or that gives no answer (it is dropped), rejoins
        cleared: either way none keeps what the request was to remove.
        """
        st = self._handles[ds]
        cast = _Broadcast(self, callback)
        live = [i for i, m in enumerate(self.members_) if m.available and st.parts[i].ds]
        if not live:
            self.hub.schedule(callback, Status.OK, b"")
            return
        cast.left = len(live)
        for i in live:
            self.members_[i].submit(op, st.parts[i].ds, body, lambda s, b, i=i: cast.reply(i, s, b))

    # -- node state ------------------------------------------------------------

    def _node_cleared(self, i: int) -> None:
        """Node i rejoins emptied (before it is up): it holds nothing, strays included."""
        self.strays[i] = False
        if self.placement is not None:
            self._cleared_up.add(i)
            self.sweeper.node_cleared(i)

    def _member_up(self, i: int) -> None:
        """Node i is available (cleared if it was back): learn its weight, maybe go up."""
        if self.weights[i] is None and self.placement is None:
            self.members_[i].submit(Op.STATS, 0, b"", lambda s, b, i=i: self._weighed(i, s, b))
        self._update_available()
        if i in self._cleared_up:
            self._cleared_up.discard(i)
            for st in self.structures:
                cleared = getattr(st.owner, "on_far_node_cleared", None)
                if cleared is not None:
                    cleared(i)
        self.sweeper.changed()

    def _member_down(self, i: int) -> None:
        """Node i went down: its copies count for nothing (it rejoins cleared)."""
        self._update_available()
        self.sweeper.changed()

    def _weighed(self, i: int, status: Any, body: Any) -> None:
        if status == Status.OK:
            limit = decode_stats_reply(body).get("limit_bytes")
            if isinstance(limit, int) and limit > 0:
                self.weights[i] = float(limit)
        self._maybe_freeze()

    def _deadline(self) -> None:
        self._freeze_timer = None
        self._deadline_passed = True
        self._maybe_freeze()

    def _maybe_freeze(self) -> None:
        """Fix the placement weights once every node weighed in, or at the deadline."""
        if self.placement is not None or self.closed:
            return
        known = [w for w in self.weights if w is not None]
        if not known or (len(known) < len(self.weights) and not self._deadline_passed):
            return
        mean = sum(known) / len(known)
        weights = [mean if w is None else w for w in self.weights]
        self.placement = [(node_seed(a), w) for a, w in zip(self.addresses, weights, strict=True)]
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        log.info(
            "far placement over %s, %d replicas",
            ", ".join(
                f"{a} ({w / (1 << 20):.0f} MiB)"
                for a, w in zip(self.addresses, weights, strict=True)
            ),
            self.replicas,
        )
        self._update_available()
        self.sweeper.settle()

    def _update_available(self) -> None:
        """available: placement settled and some node up; wake wait_ready() on the way up."""
        up = (
            self.placement is not None
            and not self.closed
            and any(m.available for m in self.members_)
        )
        if up == self.available:
            return
        self.available = up
        if up:
            waiters, self._ready_waiters = self._ready_waiters, []
            for w in waiters:
                w.switch(True)

    # -- stats -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """up (every node), degraded (some), or down."""
        up = sum(m.available for m in self.members_)
        if self.available and up == len(self.members_):
            return "up"
        return "degraded" if self.available else "down"

    def stats(self) -> dict[str, Any]:
        """Client-side counters summed over the nodes, and the tier's own."""
        per = [m.stats() for m in self.members_]
        out: dict[str, Any] = {}
        for key in (
            "far_timeouts",
            "far_failures",
            "far_reconnects",
            "far_resets",
            "far_clears",
            "far_stalls",
            "far_outstanding",
            "far_bytes_sent",
            "far_bytes_received",
        ):
            out[key] = sum(p[key] for p in per)
        out["far_requests"] = self.requests
        out["far_failures"] += self.failures
        out["far_down_seconds"] = round(sum(p["far_down_seconds"] for p in per), 3)
        out["far_available"] = int(self.available)
        out["far_state"] = self.state
        out["far_nodes"] = len(self.members_)
        out["far_nodes_available"] = sum(m.available for m in self.members_)
        out["far_replicas"] = self.replicas
        out["far_failovers"] = self.failovers
        out["far_stray_holders"] = sum(self.strays)
        out.update(self.sweeper.stats())
        return out

    def node_counters(self) -> list[dict[str, Any]]:
        """Per node: address, state, reads and writes sent, requests failed."""
        return [
            {
                "address": self.addresses[i],
                "state": m.state,
                "available": int(m.available),
                "reads": self.node_reads[i],
                "writes": self.node_writes[i],
                "errors": self.node_errors[i],
            }
            for i, m in enumerate(self.members_)
        ]
