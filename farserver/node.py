"""The far node's state: its data structures by id, its memory budget, its counters.

One `Node` per process, shared by every connection (ds ids are the node's,
not a connection's: a runtime that reconnects finds its structures again).
Ids are u32 (0 means "none" on the wire), allocated upward from a random
start and never reused while the process lives: after a node restart, a
client's stale id names no structure (NOT_FOUND: its objects are gone)
rather than, with odds of about k/2^32 for k new structures, someone
else's. CONSTRUCT params, per type (unknown keys are refused):

    BOX        {}
    ARRAY      {"elem_size": 1..64 MiB, "length": 1..2^64-1}   (stored sparsely)
    HASHTABLE  {"evict": false}   true: a cache the node may shrink (LRU)
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from farserver.errors import BadRequest, NoStructure
from farserver.memory import INDEX_OVERHEAD, ITEM_OVERHEAD, Budget
from farserver.store import Array, Box, HashTable, Structure
from protocol.far import DsType

__all__ = ["MAX_ELEM_SIZE", "SWEEP_LIMIT", "Node"]

MAX_ELEM_SIZE = 64 * 1024 * 1024  # bytes of one array element: one frame's value
SWEEP_LIMIT = 100_000  # expired items reclaimed per sweep tick, over all tables
_MAX_DS = (1 << 32) - 1

# Type -> {param: (type, default; None = required)}. bool is not an int here.
_PARAMS: dict[DsType, dict[str, tuple[type, Any]]] = {
    DsType.BOX: {},
    DsType.ARRAY: {"elem_size": (int, None), "length": (int, None)},
    DsType.HASHTABLE: {"evict": (bool, False)},
}


def _params(ds_type: DsType, params: dict[str, Any]) -> dict[str, Any]:
    """The type's params with defaults filled in; BadRequest for anything off."""
    schema = _PARAMS[ds_type]
    unknown = sorted(set(params) - set(schema))
    if unknown:
        raise BadRequest(f"unknown {ds_type.name.lower()} params: {', '.join(unknown)}")
    out = {}
    for key, (kind, default) in schema.items():
        value = params.get(key, default)
        if value is None:
            raise BadRequest(f"{ds_type.name.lower()} needs param {key!r}")
        if type(value) is not kind:
            raise BadRequest(f"param {key!r} must be a {kind.__name__}, not {value!r}")
        out[key] = value
    return out


def _box(ds: int, budget: Budget, params: dict[str, Any]) -> Box:
    return Box(ds, budget)


def _array(ds: int, budget: Budget, params: dict[str, Any]) -> Array:
    elem_size, length = params["elem_size"], params["length"]
    if not 0 < elem_size <= MAX_ELEM_SIZE:
        raise BadRequest(f"elem_size {elem_size} is not in 1..{MAX_ELEM_SIZE}")
    if not 0 < length < 1 << 64:
        raise BadRequest(f"length {length} is not in 1..2^64-1")
    return Array(ds, budget, elem_size, length)


def _hashtable(ds: int, budget: Budget, params: dict[str, Any]) -> HashTable:
    return HashTable(ds, budget, params["evict"])


_FACTORIES = {DsType.BOX: _box, DsType.ARRAY: _array, DsType.HASHTABLE: _hashtable}


class Node:
    """Everything one far node holds; every connection works on the same one."""

    def __init__(self, limit_bytes: int, name: str = "farserver", first_ds: int | None = None):
        self.name = name  # sent in HELLO's reply
        self.budget = Budget(limit_bytes)
        self.structures: dict[int, Structure] = {}  # ds -> structure
        self.now = int(time.time())  # unix seconds, refreshed per batch of frames
        self.started = time.monotonic()
        self.reads = 0  # READ requests
        self.misses = 0  # READs that found nothing
        self.writes = 0  # WRITE requests
        self.removes = 0  # REMOVE requests
        self.computes = 0  # COMPUTE requests
        self.scans = 0  # SCAN requests
        self.connections = 0  # open connections
        self.total_connections = 0  # connections accepted since start
        self._next_ds = first_ds or random.randint(1, _MAX_DS)  # next id to try

    def construct(self, ds_type: DsType, params: dict[str, Any]) -> int:
        """Create a data structure; returns its new id."""
        if len(self.structures) >= _MAX_DS:
            raise BadRequest("no data-structure ids left")
        structure_params = _params(ds_type, params)
        ds = self._next_ds
        while ds in self.structures:
            ds = ds % _MAX_DS + 1
        self.structures[ds] = _FACTORIES[ds_type](ds, self.budget, structure_params)
        self._next_ds = ds % _MAX_DS + 1
        return ds

    def destruct(self, ds: int) -> None:
        """Drop a data structure and every object in it."""
        self.structure(ds).free()
        del self.structures[ds]

    def structure(self, ds: int) -> Structure:
        """The structure with id `ds`, else NoStructure."""
        structure = self.structures.get(ds)
        if structure is None:
            raise NoStructure(f"no data structure {ds}")
        return structure

    def sweep(self, now: int) -> int:
        """Reclaim expired hash-table items (bounded work); returns how many."""
        self.now = now
        done = 0
        for structure in list(self.structures.values()):
            if type(structure) is HashTable:
                done += structure.sweep(now, SWEEP_LIMIT - done)
        return done

    def stats(self) -> dict[str, Any]:
        """The STATS reply: counters and memory, as a JSON-able dict."""
        budget = self.budget
        return {
            "bytes": budget.used,
            "limit_bytes": budget.limit,
            "objects": sum(len(s) for s in self.structures.values()),
            "evictions": budget.evictions,
            "expired": budget.expired,
            "reads": self.reads,
            "misses": self.misses,
            "writes": self.writes,
            "removes": self.removes,
            "computes": self.computes,
            "scans": self.scans,
            "structures": len(self.structures),
            "connections": self.connections,
            "total_connections": self.total_connections,
            "item_overhead_bytes": ITEM_OVERHEAD,
            "index_overhead_bytes": INDEX_OVERHEAD,
            "uptime": round(time.monotonic() - self.started, 3),
            "pid": os.getpid(),
            "node": self.name,
        }
