"""memcached's `stats` groups, plus kvcache's far-memory stats.

    stats            memcached's general stats + far-memory stats
    stats settings   the server's settings
    stats items      per-"slab class" item stats (kvcache has one class: 1)
    stats slabs      per-class memory stats (the local heap as class 1)
    stats far        far-memory detail: heap, evacuator, far client, node
    stats sizes      `STAT sizes_status disabled` (as memcached by default)
    stats detail on|off|dump   per-prefix (before ':') get/hit/set/del counts
    stats cachedump <class> <limit>   resident items of class 1
    stats reset      RESET (counters and prefix stats)

Values that need the far node (its bytes, its evictions) come from its
STATS, asked for afresh by each `stats` and `stats far` (the request parks
for at most FarNodeStats.WAIT; the last answer serves if none comes). While
the far node is unavailable nothing describes it: far_items is 0 (the items
that may come back with it are `far_items_unreachable`), curr_items counts
resident items, node_* stats are absent. Items lost with a node that came
back empty are counted in `far_items_lost`.

With several far nodes (a tier) `far_bytes`, `far_limit_bytes` and the far
evictions are sums over the nodes available; `stats far` has one row set
per node, `far:N:address`, `far:N:state`, `far:N:available`, `far:N:bytes`,
`far:N:limit_bytes`, `far:N:items`, `far:N:reads`, `far:N:writes`,
`far:N:errors` (N in --far order; bytes, limit and items only while the
node is available), and the single-node `node_*` rows only for one node.
The tier's own rows (`stats far`): far_replicas, far_failovers,
far_stray_holders (nodes that may hold copies of objects they are not home
to), and re-replication's far_rereplications, far_rereplicate_bytes,
far_under_replicated, far_rereplicate_failures, far_sweeps and far_sweep
(runtime/rereplicate.py); `stats` has far_recopies (far-only items read and
written to their replica set by re-replication).
"""

from __future__ import annotations

import gc
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from protocol import ClientError, CommandError
from protocol.far import Op, Status, decode_stats_reply
from protocol.memcache import END, OK, RESET, compose_stats
from protocol.memcache.numbers import strtoul32
from runtime import hub as _hub
from runtime.scope import DerefScope

if TYPE_CHECKING:
    from kvcache.dispatcher import Dispatcher

__all__ = ["FarNodeStats", "compose_group"]

_STARTED = time.time()


class FarNodeStats:
    """The far nodes' STATS, fetched when asked for; nothing for a node while it is down."""

    WAIT = 0.5  # seconds a `stats` waits for the nodes' answers

    def __init__(self, far: Any):
        self.far = far
        self.clients = far.nodes()  # one FarClient per node
        n = len(self.clients)
        self.values: list[dict[str, Any]] = [{} for _ in range(n)]  # last answer per node
        self.node_names = [""] * n  # the instance that gave it
        self.past_evictions = [0] * n  # evictions of earlier instances (restarted, gone)

    def refresh(self) -> None:
        """Ask every available node for its STATS and wait briefly for them. May park.

        From the hub it raises WouldPark first (nothing changed).
        """
        up = [i for i, c in enumerate(self.clients) if c.available]
        if not up:
            return
        _hub.check_can_park()
        waiter = _hub.Waiter(self.far.hub)
        replies: dict[int, tuple] = {}

        def reply(i: int, status: Any, body: Any) -> None:
            replies[i] = (status, body, self.clients[i].node_name)
            if len(replies) == len(up):
                waiter.switch(None)

        for i in up:
            self.clients[i].submit(Op.STATS, 0, b"", lambda s, b, i=i: reply(i, s, b))
        try:
            waiter.get(self.WAIT)
        except TimeoutError:
            pass
        for i, (status, body, name) in list(replies.items()):
            if status == Status.OK:
                if name != self.node_names[i]:
                    self.past_evictions[i] += self.values[i].get("evictions", 0)
                    self.node_names[i] = name
                self.values[i] = decode_stats_reply(body)

    def node(self, i: int) -> dict[str, Any]:
        """Node i's last figures while it is available; {} while it is not."""
        c = self.clients[i]
        if not c.available or c.node_name != self.node_names[i]:
            return {}
        return self.values[i]

    def current(self) -> dict[str, Any]:
        """The one far node's last figures ({} while it is down, or with several nodes)."""
        if len(self.clients) != 1 or not self.far.available:
            return {}
        return self.node(0)

    def total(self, key: str) -> int:
        """A node figure summed over the nodes available."""
        return sum(self.node(i).get(key, 0) for i in range(len(self.clients)))

    def evictions(self) -> int:
        """Items the far node(s) evicted, over every instance seen."""
        return sum(self.past_evictions) + self.total("evictions")

    def rows(self, mgr: Any) -> list[tuple[str, Any]]:
        """`stats far`'s per-node rows: far:N:address ... far:N:errors."""
        far = self.far
        counters = getattr(far, "node_counters", None)
        per = counters() if counters is not None else None
        out: list[tuple[str, Any]] = []
        for i, c in enumerate(self.clients):
            if per is not None:
                row = per[i]
            else:  # one node: every far read and write went to it
                row = {
                    "address": f"{c.host}:{c.port}",
                    "state": c.state,
                    "available": int(c.available),
                    "reads": mgr.counters["far_reads"],
                    "writes": mgr.counters["far_writes"],
                    "errors": c.failures + c.timeouts,
                }
            node = self.node(i)
            p = f"far:{i}:"
            out += [(p + "address", row["address"]), (p + "state", row["state"])]
            out.append((p + "available", row["available"]))
            if node:
                out.append((p + "bytes", node.get("bytes", 0)))
                out.append((p + "limit_bytes", node.get("limit_bytes", 0)))
                out.append((p + "items", node.get("objects", 0)))
            out += [(p + k, row[k]) for k in ("reads", "writes", "errors")]
        return out


def general(d: Dispatcher) -> list[tuple[str, Any]]:
    """memcached's general stats, then kvcache's far-memory ones."""
    table = d.table
    mgr = table.manager
    heap = mgr.heap
    ru = resource.getrusage(resource.RUSAGE_SELF)
    now = time.time()
    server = dict(d.stats_source()) if d.stats_source else {}
    c = d.counter_values()
    far_up = mgr.far is not None and mgr.far.available
    far_only = table.far_only()  # items whose only copy is far (filter-based)
    far_items = far_only if far_up else 0
    fs = d.far_stats
    node_evictions = fs.evictions() if fs else 0
    out: list[tuple[str, Any]] = [
        ("pid", os.getpid()),
        ("uptime", int(now - _STARTED)),
        ("time", int(now)),
        ("version", d.version_string),
        ("libevent", "uvloop"),
        ("pointer_size", 64),
        ("rusage_user", ru.ru_utime),
        ("rusage_system", ru.ru_stime),
        ("max_connections", server.get("max_connections", 0)),
        ("curr_connections", server.get("curr_connections", 0)),
        ("total_connections", server.get("total_connections", 0)),
        ("rejected_connections", server.get("rejected_connections", 0)),
        ("connection_structures", server.get("curr_connections", 0)),
    ]
    if "time_since_server_cert_refresh" in server:  # client TLS on (-Z)
        out.append(("time_since_server_cert_refresh", server["time_since_server_cert_refresh"]))
    for name in (
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "get_expired",
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
    ):
        out.append((name, c[name]))
    ev = mgr.evacuator
    out += [
        ("bytes_read", server.get("bytes_read", 0)),
        ("bytes_written", server.get("bytes_written", 0)),
        ("limit_maxbytes", heap.budget_bytes),
        ("threads", 1),
        ("bytes", heap.live_bytes),
        ("curr_items", len(table) + far_items),
        ("total_items", c["total_items"]),
        ("expired_unfetched", table.stats["reclaimed"]),
        ("evicted_unfetched", 0),
        ("evictions", table.stats["evictions"] + node_evictions),
        ("reclaimed", table.stats["reclaimed"]),
        # far memory
        ("local_items", len(table)),
        ("local_bytes", heap.used_bytes),
        ("local_limit_bytes", heap.budget_bytes),
        ("far_items", far_items),
        ("far_items_unreachable", 0 if far_up else far_only),
        ("far_items_lost", table.stats["far_lost"]),
        ("far_bytes", fs.total("bytes") if fs and far_up else 0),
        ("far_limit_bytes", fs.total("limit_bytes") if fs and far_up else 0),
        ("far_reads", mgr.counters["far_reads"]),
        ("far_writes", mgr.counters["far_writes"]),
        ("far_recopies", mgr.counters["far_recopies"]),
        ("far_hits", table.stats["far_hits"]),
        ("far_misses", table.stats["far_misses"]),
        ("far_errors", c["far_errors"]),
        ("evacuations", ev.writebacks),
        ("clean_drops", ev.clean_drops),
        ("nt_reads", table.stats["nt_reads"]),
        ("filter_negatives", table.stats["filter_negatives"]),
        ("offloads", c["offloads"]),
        ("far_available", int(far_up)),
        ("prefetches", mgr.counters["prefetches"]),
        ("prefetch_admits", mgr.counters["prefetch_hits"]),
        ("alloc_waits", mgr.counters["alloc_waits"]),
        ("greenlet_takeovers", server.get("greenlet_takeovers", 0)),
        ("far_gets_in_hub", server.get("far_gets_in_hub", 0)),
        ("greenlets_created", server.get("greenlets_created", 0)),
        ("binary_protocol_rejected", server.get("binary_protocol_rejected", 0)),
    ]
    return out


def settings(d: Dispatcher) -> list[tuple[str, Any]]:
    """`stats settings`: the server's configuration."""
    s = dict(d.settings_source()) if d.settings_source else {}
    heap = d.table.manager.heap
    return [
        ("maxbytes", heap.budget_bytes),
        ("maxconns", s.get("maxconns", 0)),
        ("tcpport", s.get("port", 0)),
        ("udpport", 0),
        ("inter", s.get("listen", "")),
        ("tcp_backlog", s.get("backlog", 0)),
        ("verbosity", d.verbosity),
        ("evictions", "on"),
        ("growth_factor", "1.25"),
        ("chunk_size", 48),
        ("num_threads", 1),
        ("cas_enabled", True),
        ("item_size_max", d.item_size_max),
        ("segment_size", heap.segment_size),
        ("compiled", s.get("compiled", "no")),
        ("far", s.get("far", "none")),
        ("far_tls", s.get("far_tls", "no")),
        ("ssl_enabled", s.get("ssl_enabled", "no")),
        ("nt_threshold", d.table.nt_threshold or 0),
        ("evac_start_free", heap.start_at),
        ("evac_stop_free", heap.stop_at),
        ("alloc_park_free", heap.park_at),
    ] + [(k, v) for k, v in s.items() if k.startswith("ssl_") and k != "ssl_enabled"]


def items(d: Dispatcher) -> list[tuple[str, Any]]:
    """`stats items`: one class, the whole table."""
    t = d.table
    return [
        ("items:1:number", len(t) + len(t.filter)),
        ("items:1:number_local", len(t)),
        ("items:1:number_far", len(t.filter)),
        ("items:1:evicted", t.stats["evictions"]),
        ("items:1:reclaimed", t.stats["reclaimed"]),
    ]


def slabs(d: Dispatcher) -> list[tuple[str, Any]]:
    """`stats slabs`: the local heap as one class of 1 MiB pages."""
    heap = d.table.manager.heap
    used = heap.units - heap.free_units
    return [
        ("1:chunk_size", heap.segment_size),
        ("1:total_pages", used),
        ("1:used_chunks", used),
        ("1:free_chunks", heap.free_units),
        ("1:mem_requested", heap.live_bytes),
        ("active_slabs", 1),
        ("total_malloced", heap.used_bytes),
    ]


def far(d: Dispatcher) -> list[tuple[str, Any]]:
    """`stats far`: heap, evacuator, far client and far node counters."""
    mgr = d.table.manager
    out = sorted(mgr.stats().items())
    out += sorted(("table_" + k, v) for k, v in d.table.stats.items())
    out.append(("filter_bytes", d.table.filter.nbytes))
    if d.supervision_source is not None:
        out += sorted(d.supervision_source().items())
    for gen, st in enumerate(gc.get_stats()):  # the cyclic collector: tuned by kvcache.app
        out.append((f"gc_gen{gen}_collections", st["collections"]))
    out.append(("gc_tracked_objects", len(gc.get_objects())))
    if d.far_stats is not None:
        node = d.far_stats.current()
        out += sorted(("node_" + k, v) for k, v in node.items() if not isinstance(v, dict))
        out += d.far_stats.rows(mgr)
    return out


def sizes(d: Dispatcher) -> list[tuple[str, Any]]:
    """`stats sizes`: memcached's item-size histogram, off as it is by default."""
    return [("sizes_status", "disabled")]


_GROUPS = {
    b"settings": settings,
    b"items": items,
    b"slabs": slabs,
    b"far": far,
    b"sizes": sizes,
}
_SLAB_CLASSES = 64  # memcached's MAX_NUMBER_OF_SLAB_CLASSES: larger ids are illegal


def detail(d: Dispatcher, args: list[bytes]) -> bytes:
    """`stats detail on|off|dump`: memcached's per-prefix stats."""
    mode = args[1] if len(args) >= 2 else None  # memcached ignores further tokens
    if mode in (b"on", b"off"):
        d.detail_on = mode == b"on"
        return OK
    if mode == b"dump":
        lines = [
            b"PREFIX %s get %d hit %d set %d del %d\r\n" % (prefix, *row)
            for prefix, row in d.detail.items()
        ]
        return b"".join(lines) + END
    raise ClientError("usage: stats detail on|off|dump")


def cachedump(d: Dispatcher, args: list[bytes]) -> bytes:
    """`stats cachedump <class> <limit>`: `ITEM <key> [<n> b; <exptime> s]` lines.

    kvcache has one class (1): its resident items, up to `limit` (0 = all).
    """
    if len(args) < 3:
        raise ClientError("bad command line")
    cls, limit = strtoul32(args[1]), strtoul32(args[2])
    if cls is None or limit is None:
        raise ClientError("bad command line format")
    if cls >= _SLAB_CLASSES:
        raise ClientError("Illegal slab id")
    lines = []
    if cls == 1:
        scope = DerefScope()
        try:
            for key in list(d.table.index):
                item = d.table.peek(scope, key)
                if item is None:
                    continue
                lines.append(b"ITEM %s [%d b; %d s]\r\n" % (key, len(item.value), item.exptime))
                if limit and len(lines) >= limit:
                    break
        finally:
            scope.release()
    return b"".join(lines) + END


def compose_group(d: Dispatcher, args: list[bytes]) -> bytes:
    """The reply to `stats <args>`."""
    if not args:
        return compose_stats(general(d))
    name = args[0]
    if name == b"reset":
        d.reset_stats()
        return RESET
    if name == b"detail":
        return detail(d, args)
    if name == b"cachedump":
        return cachedump(d, args)
    group = _GROUPS.get(name)
    if group is None:
        raise CommandError()
    return compose_stats(group(d))
