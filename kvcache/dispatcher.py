"""The one place protocol meets storage: request event -> reply bytes.

One method per memcached command (memcached's process_<cmd>_command, pelikan's
Execute), found by `Dispatcher.handlers[req.cmd]`. Every method appends its
reply to `out` and may park (a far fetch, an allocation waiting for room);
from the hub such a park raises WouldPark *before* the method changed
anything, so the server re-runs the request in a pooled greenlet.

Semantics are memcached 1.6's: exptime 0 = never, <= 30 days relative,
larger = absolute unix time, negative = already expired; cas uniques from one
counter; incr wraps at 2^64, decr floors at 0 and, like memcached, pads a
shorter result with spaces to the old length; flush_all [delay]. Items that
are far are read back through the RemHashTable; touch, cas, append, prepend,
incr, decr and delete of a far item run at the far node (AIFM's remote agent).
When the far node is down, far items read as misses (get, mg); verbs that
need a far item answer as if it were missing (NOT_FOUND / NOT_STORED / NF).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cython

from protocol import ClientError, CommandError
from protocol.far import Status
from protocol.memcache import (
    CRAWLER_BADCLASS,
    CRAWLER_NOTSTARTED,
    DELETED,
    END,
    EXISTS,
    KEY_MAX_LENGTH,
    MEMLIMIT_TOO_LARGE,
    MEMLIMIT_TOO_SMALL,
    MN,
    NOT_FOUND,
    NOT_STORED,
    OK,
    REASSIGN_BADCLASS,
    REASSIGN_NOSPARE,
    REASSIGN_SAME,
    SHUTDOWN_DISABLED,
    STORED,
    TLS_NOT_ENABLED,
    TOUCHED,
    ItemInfo,
    append_value_header,
    compose_ma,
    compose_md,
    compose_me,
    compose_metadump,
    compose_mg_hit,
    compose_miss,
    compose_ms,
    compose_number,
    compose_version,
    value_header,
)
from protocol.memcache.numbers import strtoull64
from protocol.memcache.requests import Get, Store
from runtime.errors import FarMemoryError, WouldPark
from runtime.hashtable import FETCHED, STALE, TOKEN_SENT, WARM_KEYS, Item, RemHashTable
from runtime.scope import DerefScope

if cython.compiled:
    from cython.cimports.cpython.bytearray import (
        PyByteArray_AS_STRING,
        PyByteArray_FromStringAndSize,
        PyByteArray_Resize,
    )
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy
    from cython.cimports.libc.time import time as c_time
    from cython.cimports.protocol.memcache.replies import HEADER_ROOM, write_value_header
else:
    HEADER_ROOM = 6 + 3 * 21 + 2  # protocol.memcache.replies': a VALUE line less its key

__all__ = ["VERSION", "Dispatcher", "absolute_exptime"]

VERSION = "1.6.18-kvcache-0.1.0"
MONTH = 60 * 60 * 24 * 30  # exptimes above this are absolute unix times
_U64 = 1 << 64
_EXPIRED = 1  # an absolute exptime long past
_SYSTEM_CLOCK = cython.declare(object, time.time)  # a C global: `is` with no lookup
_WARM_KEYS = cython.declare(cython.Py_ssize_t, WARM_KEYS)
# A state bit of our own in the item's state byte: ms stored the item under a
# base64 (b) key, so mg k and me return it base64 (memcached 1.6.18's
# ITEM_KEY_BINARY; its mg N / ma N vivify items without it).
# TODO: runtime/hashtable.py should own this bit and carry it with far
# copies; an item that went far and came back forgets it, so a key that
# could not be sent raw (a space or control byte) is sent base64 anyway.
KEY_BINARY = 8
_RAW_KEY_BAD = bytes(range(33)) + b"\x7f"  # bytes a text-protocol key cannot carry


def _binary_key(item: Item) -> bool:
    """Return the item's key base64-encoded (b) in mg k / me replies?"""
    return bool(item.state & KEY_BINARY) or len(item.key.translate(None, _RAW_KEY_BAD)) != len(
        item.key
    )


def absolute_exptime(raw: cython.longlong, now: cython.longlong) -> cython.longlong:
    """memcached's exptime rules: 0 never, <= 30 days relative, else absolute; < 0 expired."""
    if raw == 0:
        return 0
    if raw < 0:
        return _EXPIRED
    if raw <= MONTH:
        return now + raw
    return raw if raw > now else _EXPIRED


class Dispatcher:
    """Executes parsed requests against a RemHashTable, memcached-style."""

    def __init__(
        self,
        table: RemHashTable,
        *,
        item_size_max: int = 1 << 20,
        stats: Callable[[], list[tuple[str, Any]]] | None = None,
        on_shutdown: Callable[[bool], None] | None = None,
        on_memlimit: Callable[[int], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.table = table
        self.item_size_max = item_size_max
        self.clock = clock
        self.stats_source = stats  # extra stats (server, far) for `stats`
        self.on_shutdown = on_shutdown  # None: "ERROR: shutdown not enabled"
        self.on_memlimit = on_memlimit  # cache_memlimit MB -> adjusted?
        self.on_refresh_certs: Callable[[], str | None] | None = None  # client TLS on: reload
        self.verbosity = 0
        self.version_string = VERSION
        self.settings_source: Callable[[], list[tuple[str, Any]]] | None = None
        self.far_stats: Any = None  # kvcache.stats.FarNodeStats, when there is a far node
        self.supervision_source: Callable[[], dict[str, Any]] | None = None  # embedded node
        self._cas = 0
        self._flush_timer: Any = None
        self.detail_on = False  # `stats detail on|off`
        self.lru_crawler = True  # `lru_crawler enable|disable` (there is nothing to crawl)
        self.detail: dict[bytes, list[int]] = {}  # key prefix -> [get, hit, set, del]
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.fast_hits = 0  # keys the resident get path served: cmd_get and get_hits both
        self.fast_sets = 0  # sets the fast path stored: cmd_set and total_items both
        self.handlers: dict[str, Callable[[Any, DerefScope, list], None]] = {
            "get": self.get,
            "gets": self.get,
            "gat": self.get,
            "gats": self.get,
            "set": self.store,
            "add": self.store,
            "replace": self.store,
            "append": self.store,
            "prepend": self.store,
            "cas": self.store,
            "too_large": self.too_large,
            "delete": self.delete,
            "incr": self.arith,
            "decr": self.arith,
            "touch": self.touch,
            "flush_all": self.flush_all,
            "stats": self.stats,
            "version": self.version,
            "verbosity": self.verbosity_cmd,
            "quit": self.nothing,
            "shutdown": self.shutdown,
            "cache_memlimit": self.cache_memlimit,
            "mg": self.mg,
            "ms": self.ms,
            "md": self.md,
            "ma": self.ma,
            "me": self.me,
            "mn": self.mn,
            "slabs reassign": self.slabs_reassign,
            "slabs automove": self.admin_setting,
            "lru_crawler crawl": self.lru_crawler_crawl,
            "lru_crawler metadump": self.lru_crawler_metadump,
            "lru_crawler tocrawl": self.admin_setting,
            "lru_crawler sleep": self.admin_setting,
            "lru_crawler enable": self.lru_crawler_switch,
            "lru_crawler disable": self.lru_crawler_switch,
            "lru tune": self.admin_setting,
            "lru mode": self.admin_setting,
            "lru temp_ttl": self.admin_setting,
            "extstore": self.admin_setting,
            "watch": self.watch,
            "refresh_certs": self.refresh_certs,
        }

    # -- helpers -------------------------------------------------------------------

    def next_cas(self) -> int:
        """A fresh cas unique."""
        self._cas += 1
        return self._cas

    def now(self) -> int:
        """The server's unix time in seconds."""
        return int(self.clock())

    def _lookup(self, scope: DerefScope, key: bytes) -> Item | None:
        """The live item under `key`, from far if need be; far trouble reads as a miss."""
        try:
            return self.table.get(scope, key)
        except FarMemoryError:
            self.counters["far_errors"] += 1
            return None

    def _probe(self, key: bytes, copy_value: bool = False) -> Item | None:
        """The live item under `key` (from far if need be), pinning nothing. May park.

        For requests that allocate next: a request that waited for memory
        while pinning a segment could wait on itself (a 4-segment heap may
        have no other to evacuate). Only the item's fields stay valid: its
        value is copied out with `copy_value`, else emptied; to change the
        item in place, peek it again.
        """
        own = DerefScope()
        try:
            item = self._lookup(own, key)
            if item is not None:
                item.value = memoryview(bytes(item.value) if copy_value else b"")
                item.slot, item.seg = -1, None  # its location may change from now on
        finally:
            own.release()
        return item

    def _far_op(self, key: bytes, op: str, *fields: int, data: bytes = b"") -> tuple:
        """An offloaded op on a far item; (None, ...) if the node is unreachable."""
        self.counters["offloads"] += 1
        try:
            return self.table.offload(key, op, *fields, data=data)
        except FarMemoryError:
            self.counters["far_errors"] += 1
            return None, (), b""

    def prefetch(self, keys: list[bytes]) -> None:
        """Start far reads of keys that requests parsed ahead will get. Never parks."""
        self.table.prefetch(keys)

    def _offloads(self, key: bytes) -> bool:
        """Whether a verb on `key` runs at the far node: a far item with one far copy.

        With replicas (R > 1) it never does: the item is brought home,
        changed, and written back to every replica (no replica diverges).
        """
        table = self.table
        return key not in table.index and table.may_be_far(key) and table.can_offload()

    # -- retrieval -------------------------------------------------------------------

    def get(self, req: Any, scope: DerefScope, out: list) -> None:
        """get / gets / gat / gats: every far fetch is sent before one park."""
        if req.exptime is not None or self.detail_on:
            self._get_items(req, scope, out)
            return
        if self._get_resident(req, out):
            return
        keys = req.keys
        found = self.table.lookup_many(scope, keys, self.now())  # resident hits: the hot path
        if None in found:
            self._get_rest(scope, keys, found)  # may park: before anything is counted
        self._reply_found(req, found, out)

    def start_far_get(self, req: Any, on_landed: Callable[[Any, dict, Any], None]) -> bool:
        """Send a get's far reads without parking (hub); False if it cannot go that way.

        For a plain get/gets whose keys are not all resident: when the reads
        have landed, on_landed(req, results, error) runs in the hub and the
        caller finishes the request with get_landed(); nothing is counted or
        changed before. False (nothing sent): gat/gats, stats detail on, or a
        far structure not constructed yet; the caller then parks in a
        greenlet as for any request. A far node that is down is not a reason:
        the reads fail at once and on_landed gets the error. on_landed never
        runs before start_far_get returns.
        """
        if req.exptime is not None or self.detail_on:
            return False
        table: RemHashTable = self.table
        now = self._now()
        may_be_far = table.filter
        far = [k for k in req.keys if table.find_live(k, now) < 0 and k in may_be_far]
        if not far:
            return False
        try:
            return table.fetch_many(far, on_landed, req)
        except FarMemoryError as exc:  # reported from the hub's next turn, as promised
            table.manager.hub.schedule(on_landed, req, {}, exc)
            return True

    def get_landed(self, req: Any, scope: DerefScope, out: list, fetched: dict, error: Any) -> None:
        """Finish a get started by start_far_get, its reads landed: the reply into out.

        Never parks: items fetched are admitted (or served non-temporally),
        keys whose reads failed read as misses, as in the parked path. A key
        that went far while the others were read (the evacuator ran) raises
        WouldPark, nothing counted: the caller runs the get again, parked;
        but not after a failed read (`error`), which also leaves its key out
        of `fetched`: reading again would wait a second far timeout.
        """
        table: RemHashTable = self.table
        table.admit_landed(fetched)
        if error is None and self._get_resident(req, out):  # all resident now: the hot path
            return
        keys = req.keys
        found = table.lookup_many(scope, keys, self.now())
        if None in found:
            rest = [key for key, hit in zip(keys, found, strict=True) if hit is None]
            items = table.landed_many(scope, rest, fetched)
            if error is None:  # after a failed read, a key not fetched is that read's miss
                for key, item in zip(rest, items, strict=True):
                    if item is None and key not in fetched and table.may_be_far(key):
                        raise WouldPark("a key of the get went far while the others were read")
            self._fill(found, items)
        if error is not None:
            self.counters["far_errors"] += 1
        self._reply_found(req, found, out)

    def _reply_found(self, req: Any, found: list, out: list) -> None:
        """Count a get and compose its reply from (flags, cas, value) hits, None misses."""
        keys = req.keys
        c = self.counters
        c["cmd_get"] += len(keys)
        with_cas = req.cas
        hits = 0
        append = out.append
        for key, hit in zip(keys, found, strict=True):
            if hit is None:
                continue
            hits += 1
            flags, cas, value = hit
            append(value_header(key, flags, len(value), cas if with_cas else None))
            append(value)
            append(b"\r\n")
        append(END)
        c["get_hits"] += hits
        c["get_misses"] += len(keys) - hits

    def _get_resident(self, req: Get, out: list) -> cython.bint:
        """The hot path of get/gets: every key a live resident item? Then reply, True.

        One probe per key (find_live marks them fetched and hot; idempotent,
        so a False here, for a key missing, expired or far, leaves the general
        path nothing to undo) and one buffer for the whole reply, values
        copied in: nothing is pinned.
        """
        keys: list = req.keys
        table: RemHashTable = self.table
        now: cython.uint = self._now()
        n: cython.Py_ssize_t = len(keys)
        i: cython.Py_ssize_t
        slot: cython.Py_ssize_t
        with_cas: cython.bint = req.cas
        flags: cython.uint = 0
        cas: cython.ulonglong = 0
        nvalue: cython.long = 0
        if cython.compiled and n == 1 and len(keys[0]) <= KEY_MAX_LENGTH:
            # one key (most gets): the reply is a bytes of its exact size, which the
            # transport writes as is (a bytearray it would first wrap in a cast view)
            head = cython.declare(cython.char[328])  # HEADER_ROOM (71) + a 250-byte key
            key = keys[0]
            slot = table.find_live(key, now)
            if slot < 0:
                return False
            value = table.item_fields(
                slot, cython.address(flags), cython.address(cas), cython.address(nvalue)
            )
            hlen: cython.Py_ssize_t = (
                write_value_header(head, key, flags, nvalue, cas, with_cas) - head
            )
            reply = PyBytes_FromStringAndSize(cython.NULL, hlen + nvalue + 7)
            p = PyBytes_AS_STRING(reply)
            memcpy(p, head, hlen)
            memcpy(p + hlen, value, nvalue)
            memcpy(p + hlen + nvalue, b"\r\nEND\r\n", 7)
        elif cython.compiled:  # one buffer, written in place, grown as it fills
            used: cython.Py_ssize_t = 0
            room: cython.Py_ssize_t = n * (HEADER_ROOM + 128) + 5
            reply = PyByteArray_FromStringAndSize(cython.NULL, room)
            for i in range(n):
                if i % _WARM_KEYS == 0:  # the next keys' probes, their cache misses overlapped
                    table.warm_keys(keys, i, i + _WARM_KEYS)
                key = keys[i]
                slot = table.find_live(key, now)
                if slot < 0:
                    return False
                value = table.item_fields(
                    slot, cython.address(flags), cython.address(cas), cython.address(nvalue)
                )
                need: cython.Py_ssize_t = used + HEADER_ROOM + len(key) + nvalue + 7
                if need > room:
                    room = max(need, 2 * room)
                    PyByteArray_Resize(reply, room)
                p = PyByteArray_AS_STRING(reply) + used
                p = write_value_header(p, key, flags, nvalue, cas, with_cas)
                memcpy(p, value, nvalue)
                p += nvalue
                p[0] = 13
                p[1] = 10
                used = p + 2 - PyByteArray_AS_STRING(reply)
            memcpy(PyByteArray_AS_STRING(reply) + used, b"END\r\n", 5)
            PyByteArray_Resize(reply, used + 5)
        else:
            slots = []
            for i in range(n):
                slot = table.find_live(keys[i], now)
                if slot < 0:
                    return False
                slots.append(slot)
            reply = bytearray()
            for i in range(n):
                slot = slots[i]
                append_value_header(
                    reply,
                    keys[i],
                    table.flags_of(slot),
                    table.value_len(slot),
                    table.cas_of(slot) if with_cas else 0,
                    with_cas,
                )
                table.copy_value(slot, reply)
                reply += b"\r\n"
            reply += END
        out.append(reply)
        self.fast_hits += n  # cmd_get and get_hits, folded in by counter_values()
        return True

    def _now(self) -> cython.uint:
        """now(), from the C library when the clock is the system's."""
        if cython.compiled and self.clock is _SYSTEM_CLOCK:
            return c_time(cython.NULL)
        return int(self.clock())

    def _get_rest(self, scope: DerefScope, keys: list, found: list) -> None:
        """Fill `found`'s gaps: expired, far (one park for all) or missing keys. May park."""
        rest = [key for key, hit in zip(keys, found, strict=True) if hit is None]
        try:
            items = self.table.get_many(scope, rest)
        except FarMemoryError:
            self.counters["far_errors"] += 1
            items = [self.table.peek(scope, k) for k in rest]
        self._fill(found, items)

    def _fill(self, found: list, items: list) -> None:
        """Put `items` (for found's None entries, in order) into found as hits."""
        more = iter(items)
        for n, hit in enumerate(found):
            if hit is None:
                item = next(more)
                if item is not None:
                    self._accessed(item)
                    found[n] = (item.flags, item.cas, item.value)

    def _get_items(self, req: Any, scope: DerefScope, out: list) -> None:
        """get/gets with `stats detail on`, gat/gats: the general path, item by item."""
        keys = req.keys
        try:
            items = self.table.get_many(scope, keys)
        except FarMemoryError:
            self.counters["far_errors"] += 1
            items = [self.table.peek(scope, k) for k in keys]
        touch = req.exptime is not None
        exptime = absolute_exptime(req.exptime, self.now()) if touch else 0
        c = self.counters
        for key, item in zip(keys, items, strict=True):
            if item is None:
                self._record_get(key, False)
                c["touch_misses" if touch else "get_misses"] += 1
                if touch:
                    c["cmd_touch"] += 1
                else:
                    c["cmd_get"] += 1
                continue
            if touch:
                c["cmd_touch"] += 1
                c["touch_hits"] += 1
            else:
                c["cmd_get"] += 1
                c["get_hits"] += 1
            self._record_get(key, True)
            if exptime == _EXPIRED:  # like memcached: returned, then gone
                value = bytes(item.value)
                self._set_exptime(item, exptime)
            else:
                if touch:
                    self._set_exptime(item, exptime)
                self._accessed(item)
                value = item.value
            out.append(value_header(key, item.flags, len(value), item.cas if req.cas else None))
            out.append(value)
            out.append(b"\r\n")
        out.append(END)

    def _record_get(self, key: bytes, hit: bool) -> None:
        """`stats detail on`: count a get of `key` under its prefix."""
        if self.detail_on:
            row = self._prefix_row(key)
            if row is not None:
                row[0] += 1
                row[1] += hit

    def _prefix_row(self, key: bytes) -> list[int] | None:
        """The [get, hit, set, del] counters of key's prefix (before ':'), or None."""
        cut = key.find(b":")
        if cut < 0:
            return None
        return self.detail.setdefault(key[:cut], [0, 0, 0, 0])

    def _accessed(self, item: Item) -> None:
        if item.slot >= 0:
            self.table.set_state(item, item.state | FETCHED, self.now())

    def _set_exptime(self, item: Item, exptime: int) -> None:
        if exptime == _EXPIRED:
            self.table.delete(item.key)
        elif item.slot >= 0:
            self.table.set_exptime(item, exptime)
        else:
            self._far_op(item.key, "touch", exptime)

    # -- storage ---------------------------------------------------------------------

    def store(self, req: Any, scope: DerefScope, out: list) -> None:
        """set / add / replace / append / prepend / cas."""
        if req.cmd == "set" and not self.detail_on and self._set_fast(req, out):
            return
        self.counters["cmd_set"] += 1
        if self.detail_on:
            row = self._prefix_row(req.key)
            if row is not None:
                row[2] += 1
        code = self._store(
            req.cmd, scope, req.key, req.value, req.flags, req.exptime, req.cas_unique
        )
        if not req.noreply:
            out.append(code)

    def _set_fast(self, req: Store, out: list) -> cython.bint:
        """The hot path of set: True if stored (the general path's very effect), else False.

        An item stored already expired takes the general path (it deletes).
        The table's store comes first: if it must wait for room (WouldPark
        from the hub) nothing was counted yet.
        """
        now: cython.uint = self._now()
        exptime: cython.longlong = absolute_exptime(req.exptime, now)
        if exptime == _EXPIRED:
            return False
        table: RemHashTable = self.table
        self._cas += 1
        table.set(req.key, req.value, req.flags, exptime, self._cas)
        self.fast_sets += 1  # cmd_set and total_items, folded in by counter_values()
        if not req.noreply:
            out.append(STORED)
        return True

    def _store(
        self,
        mode: str,
        scope: DerefScope,
        key: bytes,
        value: bytes,
        flags: int,
        raw_exptime: int,
        cas_unique: int | None,
        new_cas: int | None = None,
    ) -> bytes:
        """One storage operation; its classic reply line."""
        table = self.table
        exptime = absolute_exptime(raw_exptime, self.now())
        if mode == "set":
            return self._put(key, value, flags, exptime, new_cas)
        if mode in ("append", "prepend") and self._offloads(key):
            status, fields, _ = self._far_op(key, mode, new_cas or self.next_cas(), data=value)
            return STORED if status == Status.OK else NOT_STORED
        if mode == "cas" and self._offloads(key):
            cas = new_cas or self.next_cas()
            status, _, _ = self._far_op(key, "cas", cas_unique, flags, exptime, cas, data=value)
            if status == Status.OK:
                self.counters["cas_hits"] += 1
                return STORED
            if status == Status.EXISTS:
                self.counters["cas_badval"] += 1
                return EXISTS
            self.counters["cas_misses"] += 1
            return NOT_FOUND
        item = self._probe(key, copy_value=mode in ("append", "prepend"))
        if mode == "add":
            return (
                NOT_STORED if item is not None else self._put(key, value, flags, exptime, new_cas)
            )
        if mode == "replace":
            return (
                self._put(key, value, flags, exptime, new_cas) if item is not None else NOT_STORED
            )
        if mode == "cas":
            if item is None:
                self.counters["cas_misses"] += 1
                return NOT_FOUND
            if item.cas != cas_unique:
                self.counters["cas_badval"] += 1
                return EXISTS
            self.counters["cas_hits"] += 1
            return self._put(key, value, flags, exptime, new_cas)
        if item is None:  # append / prepend
            return NOT_STORED
        old = bytes(item.value)
        joined = old + value if mode == "append" else value + old
        if 56 + len(key) + 3 + len(joined) + (4 if item.flags else 0) > self.item_size_max:
            return NOT_STORED
        table.set(key, joined, item.flags, item.exptime, new_cas or self.next_cas())
        return STORED

    def too_large(self, req: Any, scope: DerefScope, out: list) -> None:
        """A store refused for its size: drop the old item where memcached does, then say so."""
        if req.verb in _DROPS_ON_TOO_LARGE:
            self._delete(scope, req.key)  # may park: before anything is counted
        if self.detail_on and req.verb != "ms":
            row = self._prefix_row(req.key)  # memcached counts a classic store before its size
            if row is not None:
                row[2] += 1
        self.counters["store_too_large"] += 1
        raise req.error

    def _put(self, key: bytes, value: bytes, flags: int, exptime: int, cas: int | None) -> bytes:
        if exptime == _EXPIRED:
            self.table.delete(key)  # stored already expired: invisible at once
        else:
            self.table.set(key, value, flags, exptime, cas or self.next_cas())
            self.counters["total_items"] += 1
        return STORED

    # -- delete, arithmetic, touch ------------------------------------------------------

    def delete(self, req: Any, scope: DerefScope, out: list) -> None:
        """delete <key>."""
        if self.detail_on:
            row = self._prefix_row(req.key)
            if row is not None:
                row[3] += 1
        found = self._delete(scope, req.key)
        self.counters["delete_hits" if found else "delete_misses"] += 1
        if not req.noreply:
            out.append(DELETED if found else NOT_FOUND)

    def _delete(self, scope: DerefScope, key: bytes) -> bool:
        table = self.table
        if key in table.index:
            item = table.peek(scope, key)  # expired: a miss, like memcached
            table.delete(key)
            return item is not None
        if table.may_be_far(key):
            try:
                return table.delete_far(key)
            except FarMemoryError:
                self.counters["far_errors"] += 1
                return False
        return False

    def arith(self, req: Any, scope: DerefScope, out: list) -> None:
        """incr / decr <key> <delta>."""
        incr = req.cmd == "incr"
        try:
            result = self._arith(scope, req.key, incr, req.delta, None)
        except ClientError as exc:
            exc.noreply = req.noreply  # memcached silences even this line under noreply
            raise
        name = "incr" if incr else "decr"
        if result is None:
            self.counters[name + "_misses"] += 1
            if not req.noreply:
                out.append(NOT_FOUND)
            return
        self.counters[name + "_hits"] += 1
        if not req.noreply:
            out.append(compose_number(result[0]))

    def _arith(
        self,
        scope: DerefScope,
        key: bytes,
        incr: bool,
        delta: int,
        compare: int | None,
        offload: bool = True,
    ) -> tuple[int, int, bool] | None:
        """(new value, new cas, rewritten in place) or None if missing; raises on non-numeric / EX.

        A far item is changed at the far node (offloaded) unless `offload` is
        False or a cas is compared: then it is fetched and changed here.
        """
        if offload and compare is None and self._offloads(key):
            status, fields, _ = self._far_op(
                key, "incr" if incr else "decr", delta, self.next_cas()
            )
            if status == Status.OK:
                return fields[0], fields[1], True
            if status == Status.NON_NUMERIC:
                raise ClientError("cannot increment or decrement non-numeric value")
            return None
        item = self._probe(key, copy_value=True)
        if item is None:
            return None
        if compare is not None and item.cas != compare:
            raise _CasMismatch()
        old = bytes(item.value)
        current = strtoull64(old) if old else None
        if current is None:
            raise ClientError("cannot increment or decrement non-numeric value")
        value = (current + delta) % _U64 if incr else max(current - delta, 0)
        digits = b"%d" % value
        in_place = len(digits) <= len(old)
        if in_place:  # memcached rewrites the item in place, space-padded
            digits = digits.ljust(len(old))
        cas = self.next_cas()
        self.table.set(key, digits, item.flags, item.exptime, cas)
        if in_place and item.state:  # ...so it keeps its fetched, stale and token bits
            fresh = self.table.peek(scope, key)
            if fresh is not None and fresh.slot >= 0:
                self.table.set_state(fresh, item.state)
        return value, cas, in_place

    def touch(self, req: Any, scope: DerefScope, out: list) -> None:
        """touch <key> <exptime>."""
        exptime = absolute_exptime(req.exptime, self.now())
        self.counters["cmd_touch"] += 1
        if self._offloads(req.key):
            status, _, _ = self._far_op(req.key, "touch", exptime)
            hit = status == Status.OK
        else:
            item = self._lookup(scope, req.key)
            hit = item is not None
            if hit:
                self._accessed(item)  # memcached's touch bumps the item: mg h says so
                self._set_exptime(item, exptime)
        self.counters["touch_hits" if hit else "touch_misses"] += 1
        if not req.noreply:
            out.append(TOUCHED if hit else NOT_FOUND)

    # -- server-wide commands ------------------------------------------------------------

    def flush_all(self, req: Any, scope: DerefScope, out: list) -> None:
        """flush_all [delay]: invalidate every item now or at the delay."""
        self.counters["cmd_flush"] += 1
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        now = self.now()
        at = absolute_exptime(req.delay, now) if req.delay > 0 else 0
        if at and at > now:
            loop = self.table.manager.hub.loop
            self._flush_timer = loop.call_later(at - now, self._flush_now)
        else:
            self._flush_now()
        if not req.noreply:
            out.append(OK)

    def _flush_now(self) -> None:
        self._flush_timer = None
        self.table.clear()

    def stats(self, req: Any, scope: DerefScope, out: list) -> None:
        """stats [group]; the general and far groups wait briefly for the far node's. May park."""
        from kvcache.stats import compose_group

        if self.far_stats is not None and (not req.args or req.args[0] == b"far"):
            self.far_stats.refresh()  # may park: before anything is composed
        out.append(compose_group(self, req.args))

    def version(self, req: Any, scope: DerefScope, out: list) -> None:
        """version."""
        out.append(compose_version(VERSION))

    def verbosity_cmd(self, req: Any, scope: DerefScope, out: list) -> None:
        """verbosity <level>."""
        self.verbosity = req.level
        if not req.noreply:
            out.append(OK)

    def nothing(self, req: Any, scope: DerefScope, out: list) -> None:
        """quit: the server closes the connection after earlier replies."""

    def shutdown(self, req: Any, scope: DerefScope, out: list) -> None:
        """shutdown [graceful], when the server allows it (-A)."""
        if self.on_shutdown is None:
            out.append(SHUTDOWN_DISABLED)
            return
        if req.graceful is None:
            raise ClientError("invalid shutdown mode")
        self.on_shutdown(req.graceful)

    def cache_memlimit(self, req: Any, scope: DerefScope, out: list) -> None:
        """cache_memlimit <MB>."""
        mb = req.megabytes
        if mb < 8:
            line = MEMLIMIT_TOO_SMALL
        elif mb > 1_000_000_000:
            line = MEMLIMIT_TOO_LARGE
        elif self.on_memlimit is not None and self.on_memlimit(mb):
            line = OK
        else:
            line = b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
        if not req.noreply:
            out.append(line)

    def reset_stats(self) -> None:
        """stats reset."""
        for name in self.counters:
            self.counters[name] = 0
        self.fast_hits = 0
        self.fast_sets = 0
        self.detail.clear()

    def counter_values(self) -> dict[str, int]:
        """The counters, the hot path's folded in (`stats` reads these)."""
        out = dict(self.counters)
        out["cmd_get"] += self.fast_hits
        out["get_hits"] += self.fast_hits
        out["cmd_set"] += self.fast_sets
        out["total_items"] += self.fast_sets
        return out

    # -- administrative commands (memcached's slabs, lru_crawler, lru, ...) ----------------

    def admin_setting(self, req: Any, scope: DerefScope, out: list) -> None:
        """slabs automove, lru_crawler tocrawl|sleep, lru tune|mode|temp_ttl, extstore.

        Valid forms answer OK and change nothing: kvcache has no slab classes,
        segmented LRU, crawler pacing or extstore for them to tune.
        """
        if not req.noreply:
            out.append(OK)

    def slabs_reassign(self, req: Any, scope: DerefScope, out: list) -> None:
        """slabs reassign <src> <dst>: no page ever moves (one class of heap segments)."""
        src, dst = req.args
        if src == dst:
            out.append(REASSIGN_SAME)
        elif src not in _SLAB_CLASSES or dst not in _SLAB_CLASSES:
            out.append(REASSIGN_BADCLASS)  # -1 ("pick any") finds no class to pick
        else:
            out.append(REASSIGN_NOSPARE)

    def lru_crawler_crawl(self, req: Any, scope: DerefScope, out: list) -> None:
        """lru_crawler crawl <classes>: OK; expired items are reclaimed anyway."""
        if not self.lru_crawler:
            raise ClientError("lru crawler disabled")
        (classes,) = req.args
        if classes is None:
            out.append(CRAWLER_BADCLASS)
        elif classes == "hash":  # memcached walks the hash table only for metadump
            raise CommandError("an unknown error happened")
        else:
            out.append(CRAWLER_NOTSTARTED if classes == () else OK)

    def lru_crawler_metadump(self, req: Any, scope: DerefScope, out: list) -> None:
        """lru_crawler metadump <classes>: a line per live resident item, then END."""
        if not self.lru_crawler:
            raise ClientError("lru crawler disabled")
        if out:
            raise CommandError("cannot pipeline other commands before metadump")
        (classes,) = req.args
        if classes is None:
            out.append(CRAWLER_BADCLASS)
            return
        if classes == ():
            out.append(CRAWLER_NOTSTARTED)
            return
        if classes in ("all", "hash") or 1 in classes:
            own = DerefScope()  # the lines are copies: pin nothing past the dump
            try:
                for key in list(self.table.index):
                    item = self.table.peek(own, key)
                    if item is not None:
                        out.append(self._metadump_line(item))
            finally:
                own.release()
        out.append(END)

    def _metadump_line(self, item: Item) -> bytes:
        size = 56 + len(item.key) + 1 + len(item.value) + 2  # memcached's item size, as `me`
        fetched = bool(item.state & FETCHED)
        return compose_metadump(item.key, item.exptime, item.atime, item.cas, fetched, 1, size)

    def lru_crawler_switch(self, req: Any, scope: DerefScope, out: list) -> None:
        """lru_crawler enable|disable: memcached's crawler thread, as a flag."""
        if req.cmd == "lru_crawler disable":
            self.lru_crawler = False
        elif self.lru_crawler:
            raise CommandError("failed to start lru crawler thread")  # already running
        else:
            self.lru_crawler = True
        out.append(OK)

    def watch(self, req: Any, scope: DerefScope, out: list) -> None:
        """watch: refused, as by memcached -W (kvcache streams no logs to clients)."""
        raise ClientError("watch commands not allowed", noreply=req.noreply)

    def refresh_certs(self, req: Any, scope: DerefScope, out: list) -> None:
        """refresh_certs: reload the client TLS certificates; OK, or why not (as memcached).

        Its answers go out even with noreply, as memcached's do. Without TLS:
        "Error TLS not enabled". A failed reload keeps the certificates in use
        and answers memcached's error line for it.
        """
        if self.on_refresh_certs is None:
            out.append(TLS_NOT_ENABLED)
            return
        error = self.on_refresh_certs()
        out.append(OK if error is None else error.encode("utf-8", "replace") + b"\r\n")

    # -- meta commands ----------------------------------------------------------------

    def mn(self, req: Any, scope: DerefScope, out: list) -> None:
        """mn: MN once everything before it is answered."""
        out.append(MN)

    def me(self, req: Any, scope: DerefScope, out: list) -> None:
        """me <key>: debug dump of an item's metadata."""
        item = self._lookup(scope, req.key)
        if item is None:
            out.append(b"EN\r\n")
            return
        now = self.now()
        # memcached 1.6.18 prints current_time - exptime: negative while alive
        exp = -1 if item.exptime == 0 else now - item.exptime
        size = 56 + len(item.key) + 1 + len(item.value) + 2
        out.append(
            compose_me(
                item.key,
                _binary_key(item),
                exp=exp,
                la=now - item.atime,
                cas=item.cas,
                fetched=bool(item.state & FETCHED),
                cls=1,
                size=size,
            )
        )

    def _info(self, item: Item, binary: bool, exptime: int) -> ItemInfo:
        """What an mg reply may say of `item`; `t` reports `exptime` (as its flag saw it)."""
        now = self.now()
        ttl = -1 if exptime == 0 else exptime - now
        return ItemInfo(
            item.key,
            len(item.value),
            item.flags,
            item.cas,
            ttl,
            now - item.atime,
            bool(item.state & FETCHED),
            binary,
        )

    def _flag_walk(
        self, req: Any, exptime: int, created: bool, token_sent: bool, recache: bool
    ) -> tuple[int, int, bool]:
        """mg/ma flags acting in request order, as memcached's reply loop applies them.

        T sets the exptime where it stands, N does for an item just created
        (and wins it), R wins where it stands, `t` reports the exptime as of
        its place: `mg k t T30` shows the old TTL. Returns (exptime after the
        flags, exptime `t` saw, won).
        """
        now = self.now()
        shown = exptime
        won = False
        for tok in req.tokens:
            ch = tok[0]
            if ch == 84:  # T
                exptime = absolute_exptime(req.ttl, now)
            elif ch == 78 and created:  # N
                exptime = absolute_exptime(req.vivify, now)
                won = True
            elif ch == 82 and recache:  # R
                if not token_sent and not created and exptime != 0:
                    won = won or exptime < absolute_exptime(req.recache, now)
            elif ch == 116:  # t
                shown = exptime
        return exptime, shown, won

    def mg(self, req: Any, scope: DerefScope, out: list) -> None:
        """mg <key> <flags>*: its flags act in request order, as memcached's do."""
        c = self.counters
        item = self._lookup(scope, req.key)  # may park
        created = item is None and req.vivify is not None
        if created:  # N: an empty item, its TTL set by the flags below
            self.table.set(req.key, b"", 0, 0, self.next_cas())  # may park: nothing done yet
            item = self.table.peek(scope, req.key)
        if item is None:
            c["cmd_get"] += 1
            c["get_misses"] += 1  # a miss counts as a get, T or not (memcached)
            out.append(compose_miss(req, b"EN"))
            return
        state = item.state
        token_sent = bool(state & TOKEN_SENT)
        exptime, shown, won = self._flag_walk(req, item.exptime, created, token_sent, True)
        value = item.value
        if exptime != item.exptime:
            if exptime == _EXPIRED:
                value = bytes(value)  # returned, then gone
            self._set_exptime(item, exptime)  # a far copy's touch may park: first change
        touched = req.ttl is not None
        c["cmd_touch" if touched else "cmd_get"] += 1
        c["touch_hits" if touched else "get_hits"] += 1
        stale = bool(state & STALE)
        if stale and not token_sent:
            won = True
        info = self._info(item, _binary_key(item), shown)
        if item.slot >= 0 and self.table.index.get(req.key) == item.slot:
            new_state = state | (TOKEN_SENT if won else 0)
            if not req.no_update:
                self.table.set_state(item, new_state | FETCHED, self.now())
            elif new_state != state:
                self.table.set_state(item, new_state)
        out.append(compose_mg_hit(req, info, won=won, stale=stale, token_sent=token_sent))
        if req.value:
            out.append(value)
            out.append(b"\r\n")

    def ms(self, req: Any, scope: DerefScope, out: list) -> None:
        """ms <key> <datalen> <flags>* and its data block."""
        self.counters["cmd_set"] += 1
        modes = {None: "set", 83: "set", 69: "add", 65: "append", 80: "prepend", 82: "replace"}
        mode = modes[req.mode]
        compare = req.compare_cas
        if compare is not None and mode in ("set", "replace"):
            mode = "cas"
        cas = req.new_cas or self.next_cas()
        if compare and mode in ("append", "prepend"):  # add ignores C; C0 compares nothing
            item = self._probe(req.key)
            if item is not None and item.cas != compare:
                out.append(compose_ms(req, b"EX"))
                return
        raw = 0 if req.ttl is None else req.ttl
        line = self._store(mode, scope, req.key, req.data, req.client_flags, raw, compare, cas)
        code = {STORED: b"HD", NOT_STORED: b"NS", EXISTS: b"EX", NOT_FOUND: b"NF"}[line]
        if code == b"EX" and req.invalidate and mode == "cas":
            item = self._probe(req.key)
            if item is not None and 0 < compare < item.cas:  # C0 compares as "no cas": EX
                # I: an older cas still stores, as a stale item that keeps
                # the old one's TTL and won token (memcached's CAS_STALE)
                self._put(req.key, req.data, req.client_flags, item.exptime, cas)
                fresh = self.table.peek(scope, req.key)
                if fresh is not None and fresh.slot >= 0:
                    self.table.set_state(fresh, STALE | (item.state & TOKEN_SENT))
                code = b"HD"
        if code == b"HD" and req.binary and mode not in ("append", "prepend"):
            self._mark_binary(scope, req.key)  # an append stores a new item, unmarked
        out.append(compose_ms(req, code, cas if code == b"HD" else 0))

    def _mark_binary(self, scope: DerefScope, key: bytes) -> None:
        """The resident item under `key` was created with a base64 (b) key."""
        item = self.table.peek(scope, key)
        if item is not None and item.slot >= 0:
            self.table.set_state(item, item.state | KEY_BINARY)

    def md(self, req: Any, scope: DerefScope, out: list) -> None:
        """md <key> <flags>*: delete, or with I mark stale."""
        key = req.key
        if req.compare_cas is not None or req.invalidate or req.remove_value:
            item = self._probe(key, copy_value=True)
            if item is None:
                self.counters["delete_misses"] += 1
                out.append(compose_md(req, b"NF"))
                return
            if req.compare_cas is not None and item.cas != req.compare_cas:
                self.counters["delete_misses"] += 1
                out.append(compose_md(req, b"EX"))
                return
            if req.invalidate or req.remove_value:
                resident = self.table.peek(scope, key)
                if resident is None:  # non-temporal: bring it home to change it
                    self.table.set(key, bytes(item.value), item.flags, item.exptime, item.cas)
                    resident = self.table.peek(scope, key)
                item = resident
                if req.remove_value:
                    self.table.set(key, b"", item.flags, item.exptime, item.cas)
                    item = self.table.peek(scope, key)
                if req.invalidate:
                    if req.ttl is not None:
                        self.table.set_exptime(item, absolute_exptime(req.ttl, self.now()))
                    self.table.set_cas(item, req.new_cas or self.next_cas())
                    self.table.set_state(item, (item.state | STALE) & ~TOKEN_SENT)
                out.append(compose_md(req, b"HD"))
                return
        found = self._delete(scope, key)
        self.counters["delete_hits" if found else "delete_misses"] += 1
        out.append(compose_md(req, b"HD" if found else b"NF"))

    def ma(self, req: Any, scope: DerefScope, out: list) -> None:
        """ma <key> <flags>*: incr/decr with auto-create; t and T act in request order."""
        incr = req.mode in (None, 73, 43)  # I, +
        name = "incr" if incr else "decr"
        timed = req.ttl is not None or any(tok[0] == 116 for tok in req.tokens)  # T or t
        try:
            # C0 compares nothing (memcached's do_add_delta skips a cas of 0);
            # T and t need the item's exptime: it is brought home, not offloaded
            result = self._arith(
                scope, req.key, incr, req.delta, req.compare_cas or None, offload=not timed
            )
        except _CasMismatch:
            out.append(compose_miss(req, b"EX"))
            return
        created = False
        if result is None and req.vivify is not None:
            cas = self.next_cas()
            self.table.set(req.key, b"%d" % req.initial, 0, 0, cas)  # N sets its TTL below
            result = (req.initial, cas, True)
            created = True
        if result is None:
            self.counters[name + "_misses"] += 1
            out.append(compose_miss(req, b"NF"))
            return
        if not created:
            self.counters[name + "_hits"] += 1
        value, cas, in_place = result
        item = self.table.peek(scope, req.key)
        ttl = -1
        if item is not None:
            exptime, shown, _ = self._flag_walk(req, item.exptime, created, False, False)
            # a number that grew is a new item in memcached: its reply loop's T
            # then sets the old, unlinked one's exptime, so T changes nothing
            if exptime != item.exptime and in_place:
                self._set_exptime(item, exptime)
            ttl = -1 if shown == 0 else shown - self.now()
        out.append(compose_ma(req, value, cas, ttl, created=created))


# Refused stores that also drop the item stored under their key (memcached
# 1.6.18's process_update_command does it for set only, process_mset_command
# for every mode; add/replace/append/prepend/cas keep the old item).
_DROPS_ON_TOO_LARGE = frozenset(("set", "ms"))
_SLAB_CLASSES = (0, 1)  # `slabs reassign` ids: memcached's global page pool, and the heap


class _CasMismatch(Exception):
    """ma C<cas> did not match the item's cas."""


COUNTERS = (
    "total_items",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "offloads",
    "far_errors",
)
