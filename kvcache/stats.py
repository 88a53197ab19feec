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

Values that need the far node (its bytes and items) come from its STATS,
fetched in the background at most once a second, so `stats` never parks.
"""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

from protocol import ClientError, CommandError
from protocol.far import Op, Status, decode_stats_reply
from protocol.memcache import END, OK, RESET, compose_stats
from protocol.memcache.numbers import strtoul32
from runtime.scope import DerefScope

if TYPE_CHECKING:
    from kvcache.dispatcher import Dispatcher

__all__ = ["FarNodeStats", "compose_group"]

_STARTED = time.time()


class FarNodeStats:
    """The far node's STATS, refreshed in the background (never parks)."""

    def __init__(self, far: Any):
        self.far = far
        self.values: dict[str, Any] = {}
        self._asked = 0.0

    def get(self) -> dict[str, Any]:
        """The last answer; asks for a fresh one if this one is over a second old."""
        far = self.far
        now = time.monotonic()
        if far is not None and far.available and now - self._asked > 1.0:
            self._asked = now
            far.submit(Op.STATS, 0, b"", self._answer)
        return self.values

    def _answer(self, status: Any, body: Any) -> None:
        if status == Status.OK:
            self.values = decode_stats_reply(body)


def general(d: Dispatcher) -> list[tuple[str, Any]]:
    """memcached's general stats, then kvcache's far-memory ones."""
    table = d.table
    mgr = table.manager
    heap = mgr.heap
    ru = resource.getrusage(resource.RUSAGE_SELF)
    now = time.time()
    server = dict(d.stats_source()) if d.stats_source else {}
    c = d.counters
    far_items = table.far_only()  # items whose only copy is far (filter-based)
    node = d.far_stats.get() if d.far_stats else {}
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
        ("evictions", table.stats["evictions"] + node.get("evictions", 0)),
        ("reclaimed", table.stats["reclaimed"]),
        # far memory
        ("local_items", len(table)),
        ("local_bytes", heap.used_bytes),
        ("local_limit_bytes", heap.budget_bytes),
        ("far_items", far_items),
        ("far_bytes", node.get("bytes", 0)),
        ("far_limit_bytes", node.get("limit_bytes", 0)),
        ("far_reads", mgr.counters["far_reads"]),
        ("far_writes", mgr.counters["far_writes"]),
        ("far_hits", table.stats["far_hits"]),
        ("far_misses", table.stats["far_misses"]),
        ("far_errors", c["far_errors"]),
        ("evacuations", ev.writebacks),
        ("clean_drops", ev.clean_drops),
        ("nt_reads", table.stats["nt_reads"]),
        ("filter_negatives", table.stats["filter_negatives"]),
        ("offloads", c["offloads"]),
        ("far_available", int(mgr.far is not None and mgr.far.available)),
        ("prefetches", mgr.counters["prefetches"]),
        ("prefetch_admits", mgr.counters["prefetch_hits"]),
        ("alloc_waits", mgr.counters["alloc_waits"]),
        ("greenlet_takeovers", server.get("greenlet_takeovers", 0)),
        ("greenlets_created", server.get("greenlets_created", 0)),
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
        ("verbosity", d.verbosity),
        ("evictions", "on"),
        ("growth_factor", "1.25"),
        ("chunk_size", 48),
        ("num_threads", 1),
        ("cas_enabled", True),
        ("item_size_max", d.item_size_max),
        ("segment_size", heap.segment_size),
        ("far", s.get("far", "none")),
        ("nt_threshold", d.table.nt_threshold or 0),
        ("evac_start_free", heap.start_at),
        ("evac_stop_free", heap.stop_at),
        ("alloc_park_free", heap.park_at),
    ]


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
    node = d.far_stats.get() if d.far_stats else {}
    out += sorted(("node_" + k, v) for k, v in node.items() if not isinstance(v, dict))
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
