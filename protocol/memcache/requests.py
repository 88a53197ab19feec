"""The request events the memcached parser produces, one class per command shape.

Every event has `cmd`, the command's name as a str ("get", "set", "mg", ...),
so a server dispatches with one table lookup. Fields hold parsed, validated
values: keys are bytes of at most 250 bytes, numbers are ints already narrowed
as memcached narrows them (see numbers.py), exptimes are the raw relative or
absolute seconds the client sent (converting them is the server's job).
"""

from __future__ import annotations

from protocol.errors import ServerError

__all__ = [
    "NEED_DATA",
    "Admin",
    "Arith",
    "BinaryProtocol",
    "CacheMemlimit",
    "Delete",
    "FlushAll",
    "Get",
    "MetaArith",
    "MetaDebug",
    "MetaDelete",
    "MetaGet",
    "MetaNoop",
    "MetaRequest",
    "MetaSet",
    "Quit",
    "Request",
    "Shutdown",
    "Stats",
    "Store",
    "TooLarge",
    "Touch",
    "Verbosity",
    "Version",
]


class _NeedData:
    """Sentinel type: the parser needs more bytes before the next event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Request:
    """Base of every request event (a C class when compiled: `cmd` is a C field)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in _all_slots(type(self)))
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _all_slots(type(self)))

    __hash__ = None  # type: ignore[assignment]


def _all_slots(cls: type) -> list[str]:
    if hasattr(cls, "_fields"):
        return list(cls._fields)
    names: list[str] = ["cmd"]
    for klass in reversed(cls.__mro__):
        names.extend(getattr(klass, "__slots__", ()))
    return names


class Get(Request):
    """get / gets / gat / gats / bget: one or more keys (a C class when compiled)."""

    _fields = ("cmd", "keys", "cas", "exptime")

    def __init__(self, cmd: str, keys: list[bytes], cas: bool = False, exptime: int | None = None):
        self.cmd = cmd
        self.keys = keys  # in request order, duplicates kept
        self.cas = cas  # reply with cas uniques (gets, gats)
        self.exptime = exptime  # gat/gats: new exptime; None for get/gets


class Store(Request):
    """set / add / replace / append / prepend / cas with its data block (a C class compiled)."""

    _fields = ("cmd", "key", "flags", "exptime", "value", "cas_unique", "noreply")

    def __init__(
        self,
        cmd: str,
        key: bytes,
        flags: int,
        exptime: int,
        value: bytes,
        cas_unique: int | None,
        noreply: bool,
    ):
        self.cmd = cmd
        self.key = key
        self.flags = flags  # uint32
        self.exptime = exptime  # int32, raw
        self.value = value  # the data block without its \r\n
        self.cas_unique = cas_unique  # uint64 for "cas", else None
        self.noreply = noreply


class TooLarge(Request):
    """A store refused for its size: its data block was swallowed unread.

    An error with a consequence, so it reaches the server as an event: besides
    answering `error`, memcached 1.6.18 drops the item already stored under
    the key for `set` and every `ms` ("avoid stale data persisting in cache
    because we failed alloc", proto_text.c), not for the other verbs.
    """

    __slots__ = ("verb", "key", "noreply")

    def __init__(self, verb: str, key: bytes, noreply: bool):
        self.cmd = "too_large"
        self.verb = verb  # the refused command: "set", "add", ..., "cas", "ms"
        self.key = key  # as stored (an ms key given with b is decoded)
        self.noreply = noreply  # classic noreply: no reply line (ms: q never hides it)

    @property
    def error(self) -> ServerError:
        """The typed error to answer: `SERVER_ERROR object too large for cache`."""
        return ServerError("object too large for cache", noreply=self.noreply)


class Delete(Request):
    """delete <key> [0] [noreply]."""

    __slots__ = ("key", "noreply")

    def __init__(self, key: bytes, noreply: bool):
        self.cmd = "delete"
        self.key = key
        self.noreply = noreply


class Arith(Request):
    """incr / decr <key> <delta> [noreply]."""

    __slots__ = ("key", "delta", "noreply")

    def __init__(self, cmd: str, key: bytes, delta: int, noreply: bool):
        self.cmd = cmd
        self.key = key
        self.delta = delta  # uint64
        self.noreply = noreply


class Touch(Request):
    """touch <key> <exptime> [noreply]."""

    __slots__ = ("key", "exptime", "noreply")

    def __init__(self, key: bytes, exptime: int, noreply: bool):
        self.cmd = "touch"
        self.key = key
        self.exptime = exptime  # int32, raw
        self.noreply = noreply


class FlushAll(Request):
    """flush_all [delay] [noreply]."""

    __slots__ = ("delay", "noreply")

    def __init__(self, delay: int, noreply: bool):
        self.cmd = "flush_all"
        self.delay = delay  # int32 seconds (or absolute time); <= 0 means now
        self.noreply = noreply


class Stats(Request):
    """stats [sub-command [args...]]."""

    __slots__ = ("args",)

    def __init__(self, args: list[bytes]):
        self.cmd = "stats"
        self.args = args  # tokens after "stats"; empty for general stats


class Version(Request):
    """version."""

    __slots__ = ()

    def __init__(self) -> None:
        self.cmd = "version"


class Verbosity(Request):
    """verbosity <level> [noreply]."""

    __slots__ = ("level", "noreply")

    def __init__(self, level: int, noreply: bool):
        self.cmd = "verbosity"
        self.level = level  # uint32
        self.noreply = noreply


class Quit(Request):
    """quit: close the connection once earlier replies are written."""

    __slots__ = ()

    def __init__(self) -> None:
        self.cmd = "quit"


class Shutdown(Request):
    """shutdown [graceful]; graceful is None for an invalid mode."""

    __slots__ = ("graceful",)

    def __init__(self, graceful: bool | None):
        self.cmd = "shutdown"
        self.graceful = graceful  # None: "CLIENT_ERROR invalid shutdown mode"


class CacheMemlimit(Request):
    """cache_memlimit <megabytes> [noreply]."""

    __slots__ = ("megabytes", "noreply")

    def __init__(self, megabytes: int, noreply: bool):
        self.cmd = "cache_memlimit"
        self.megabytes = megabytes  # uint32
        self.noreply = noreply


class Admin(Request):
    """An administrative command: slabs, lru_crawler, lru, watch, extstore, refresh_certs.

    `cmd` names the command and its sub-command ("slabs reassign", "lru
    mode", "watch"); `args` holds what admin.py parsed for it.
    """

    __slots__ = ("args", "noreply")

    def __init__(self, cmd: str, args: tuple, noreply: bool):
        self.cmd = cmd
        self.args = args  # parsed arguments, per command (admin.py)
        self.noreply = noreply  # memcached's set_noreply_maybe: no reply line at all


class BinaryProtocol(Request):
    """The connection opened with 0x80: a binary-protocol client (unsupported)."""

    __slots__ = ()

    def __init__(self) -> None:
        self.cmd = "binary"


class MetaRequest(Request):
    """A meta command (mg, ms, md, ma) with its parsed flags.

    `tokens` keeps the flag tokens in request order: replies return flags in
    that order. Flags that do not apply to a command are accepted and ignored,
    as memcached does. Unset flags read their class-level defaults, so parsing
    stores only the flags a request carries.
    """

    # (no __slots__: its flags live in an instance dict)

    _fields = (
        "cmd",
        "key",
        "binary",
        "tokens",
        "quiet",
        "value",
        "no_update",
        "vivify",
        "ttl",
        "recache",
        "client_flags",
        "compare_cas",
        "new_cas",
        "mode",
        "delta",
        "initial",
        "invalidate",
        "remove_value",
        "data",
    )
    binary = False  # b: key was base64 on the wire
    quiet = False  # q: suppress the nominal reply
    value = False  # v: return the value
    no_update = False  # u: don't bump hotness / access time
    vivify: int | None = None  # N: ttl of the item created on a miss
    ttl: int | None = None  # T: new ttl (int32, raw)
    recache: int | None = None  # R: win recache when ttl below this
    client_flags = 0  # F: uint32 flags to store
    compare_cas: int | None = None  # C: uint64 cas to compare
    new_cas: int | None = None  # E: uint64 cas to assign
    mode: int | None = None  # M: mode character (ord)
    delta = 1  # D: uint64
    initial = 0  # J: uint64
    invalidate = False  # I
    remove_value = False  # x (md): keep the item, drop its value
    data = b""  # ms: the data block without its \r\n

    def __init__(self, cmd: str, key: bytes, tokens: list[bytes]):
        self.cmd = cmd
        self.key = key  # decoded when binary
        self.tokens = tokens  # flag tokens in request order


class MetaGet(MetaRequest):
    """mg <key> <flags>*."""

    __slots__ = ()


class MetaSet(MetaRequest):
    """ms <key> <datalen> <flags>* and its data block."""

    __slots__ = ()


class MetaDelete(MetaRequest):
    """md <key> <flags>*."""

    __slots__ = ()


class MetaArith(MetaRequest):
    """ma <key> <flags>*."""

    __slots__ = ()


class MetaDebug(Request):
    """me <key> [b]."""

    __slots__ = ("key", "binary")

    def __init__(self, key: bytes, binary: bool):
        self.cmd = "me"
        self.key = key
        self.binary = binary


class MetaNoop(Request):
    """mn: answered MN once everything before it is answered."""

    __slots__ = ()

    def __init__(self) -> None:
        self.cmd = "mn"
