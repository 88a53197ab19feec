"""memcached's administrative commands: parsing into Admin events, and their replies.

    slabs reassign <src> <dst>            slabs automove <0|1|2> | ratio <float>
    lru_crawler crawl|metadump <classes>  lru_crawler tocrawl|sleep <n>
    lru_crawler enable|disable            lru tune <hot%> <warm%> <hot f> <warm f>
    lru mode flat|segmented               lru temp_ttl <ttl>
    watch [<log type>...]                 extstore <setting> <value>
    refresh_certs

One parser per command, each a table of sub-commands (STYLE 4), checking in
memcached 1.6.18's order (proto_text.c) with its exact lines: a wrong shape
is `ERROR`, a bad number `CLIENT_ERROR bad command line format` (slabs
reassign, slabs automove, lru_crawler tocrawl/sleep) or `ERROR` (lru,
extstore, slabs automove ratio), as memcached answers each. memcached
counts tokens with a terminal one and stops tokenizing at 24 (the 23rd token
holds the rest of the line); so do these parsers. `noreply` as the last
token silences slabs automove, lru, watch and extstore, errors included
(memcached's set_noreply_maybe); slabs reassign and lru_crawler have none.

What a valid command does is the server's business: an `Admin` event names
the command in `cmd` ("slabs reassign", "lru mode", ...) and carries its
parsed arguments. Crawler class lists parse to "all", "hash", a tuple of
class ids, or None when one is invalid (memcached's BADCLASS reply, which
it gives only after checking that the crawler is enabled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol.errors import ClientError, CommandError
from protocol.memcache.numbers import strtod, strtol32, strtoul32
from protocol.memcache.requests import Admin
from protocol.memcache.text import BAD_FORMAT

if TYPE_CHECKING:
    from protocol.memcache.parser import Parser

__all__ = [
    "COMMANDS",
    "CRAWLER_BADCLASS",
    "CRAWLER_NOTSTARTED",
    "REASSIGN_BADCLASS",
    "REASSIGN_NOSPARE",
    "REASSIGN_SAME",
    "TLS_NOT_ENABLED",
    "compose_metadump",
]

MAX_TOKENS = 24  # memcached's tokenizer: 23 tokens, the last holding the rest
SLAB_CLASSES = 64  # memcached's MAX_NUMBER_OF_SLAB_CLASSES: crawler ids are 1..63
CRAWLER_SLEEP_MAX = 1_000_000  # microseconds

REASSIGN_SAME = b"SAME src and dst class are identical\r\n"
REASSIGN_BADCLASS = b"BADCLASS invalid src or dst class id\r\n"
REASSIGN_NOSPARE = b"NOSPARE source class has no spare pages\r\n"
CRAWLER_BADCLASS = b"BADCLASS invalid class id\r\n"
CRAWLER_NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"
TLS_NOT_ENABLED = b"Error TLS not enabled\r\n"  # sent even after noreply, as memcached does

_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _capped(toks: list[bytes]) -> list[bytes]:
    """The tokens memcached's tokenizer yields: at most 23, the last the rest joined."""
    if len(toks) < MAX_TOKENS:
        return toks
    return toks[: MAX_TOKENS - 2] + [b" ".join(toks[MAX_TOKENS - 2 :])]


def _noreply(toks: list[bytes]) -> bool:
    return toks[-1] == b"noreply"


# -- slabs -------------------------------------------------------------------------


def _slabs(p: Parser, toks: list[bytes]) -> Admin:
    toks = _capped(toks)
    n = len(toks) + 1  # memcached counts a terminal token
    sub = toks[1] if n > 2 else None
    if n == 5 and sub == b"reassign":
        src, dst = strtol32(toks[2]), strtol32(toks[3])
        if src is None or dst is None:
            raise ClientError(BAD_FORMAT)
        return Admin("slabs reassign", (src, dst), False)
    if n >= 4 and sub == b"automove":
        noreply = _noreply(toks)
        if toks[2] == b"ratio":
            ratio = strtod(toks[3]) if n >= 5 else None
            if ratio is None:
                raise CommandError(noreply=noreply)
            return Admin("slabs automove", (ratio,), noreply)
        level = strtoul32(toks[2])
        if level is None:
            raise ClientError(BAD_FORMAT, noreply=noreply)
        if level > 2:
            raise CommandError(noreply=noreply)
        return Admin("slabs automove", (level,), noreply)
    raise CommandError()


# -- lru_crawler ---------------------------------------------------------------------


def crawler_classes(spec: bytes) -> str | tuple[int, ...] | None:
    """A crawler's class list: "all", "hash", the ids of "1,5,...", or None if one is bad."""
    if spec in (b"all", b"hash"):
        return spec.decode()
    ids = []
    for part in spec.split(b","):
        if not part:
            continue  # strtok skips empty fields
        sid = strtoul32(part)
        if sid is None or not 1 <= sid < SLAB_CLASSES:
            return None
        ids.append(sid)
    return tuple(ids)


def _crawl(sub: str) -> Callable[[bytes], Admin]:
    def parse(arg: bytes) -> Admin:
        return Admin("lru_crawler " + sub, (crawler_classes(arg),), False)

    return parse


def _tocrawl(arg: bytes) -> Admin:
    n = strtoul32(arg)
    if n is None:
        raise ClientError(BAD_FORMAT)
    return Admin("lru_crawler tocrawl", (n,), False)


def _sleep(arg: bytes) -> Admin:
    us = strtoul32(arg)
    if us is None:
        raise ClientError(BAD_FORMAT)
    if us > CRAWLER_SLEEP_MAX:
        raise ClientError("sleep must be one second or less")
    return Admin("lru_crawler sleep", (us,), False)


_CRAWLER_WITH_ARG: dict[bytes, Callable[[bytes], Admin]] = {
    b"crawl": _crawl("crawl"),
    b"metadump": _crawl("metadump"),
    b"tocrawl": _tocrawl,
    b"sleep": _sleep,
}
_CRAWLER_ALONE = {b"enable": "lru_crawler enable", b"disable": "lru_crawler disable"}


def _lru_crawler(p: Parser, toks: list[bytes]) -> Admin:
    toks = _capped(toks)
    n = len(toks) + 1
    if n == 4 and toks[1] in _CRAWLER_WITH_ARG:
        return _CRAWLER_WITH_ARG[toks[1]](toks[2])
    if n == 3 and toks[1] in _CRAWLER_ALONE:
        return Admin(_CRAWLER_ALONE[toks[1]], (), False)
    raise CommandError()


# -- lru -------------------------------------------------------------------------------


def _lru_tune(toks: list[bytes], noreply: bool) -> Admin:
    hot, warm = strtoul32(toks[2]), strtoul32(toks[3])
    hot_factor, factor = strtod(toks[4]), strtod(toks[5])
    if hot is None or warm is None or hot_factor is None or factor is None:
        raise CommandError(noreply=noreply)
    if (hot + warm) & 0xFFFFFFFF > 80:  # memcached adds two uint32s
        raise CommandError("hot and warm pcts must not exceed 80", noreply=noreply)
    if factor <= 0 or hot_factor <= 0:  # NaN passes, as in C
        raise CommandError("hot/warm age factors must be greater than 0", noreply=noreply)
    return Admin("lru tune", (hot, warm, hot_factor, factor), noreply)


def _lru_mode(toks: list[bytes], noreply: bool) -> Admin:
    if toks[2] not in (b"flat", b"segmented"):
        raise CommandError(noreply=noreply)
    return Admin("lru mode", (toks[2].decode(),), noreply)


def _lru_temp_ttl(toks: list[bytes], noreply: bool) -> Admin:
    ttl = strtol32(toks[2])
    if ttl is None:
        raise CommandError(noreply=noreply)
    return Admin("lru temp_ttl", (ttl,), noreply)


# sub-command -> (fewest tokens, memcached's terminal one included; reader)
_LRU: dict[bytes, tuple[int, Callable[[list[bytes], bool], Admin]]] = {
    b"tune": (7, _lru_tune),
    b"mode": (4, _lru_mode),
    b"temp_ttl": (4, _lru_temp_ttl),
}


def _lru(p: Parser, toks: list[bytes]) -> Admin:
    toks = _capped(toks)
    n = len(toks) + 1
    if n < 3:
        raise CommandError()
    noreply = _noreply(toks)
    least, reader = _LRU.get(toks[1], (0, None))
    if reader is None or n < least:
        raise CommandError(noreply=noreply)
    return reader(toks, noreply)


# -- watch, extstore, refresh_certs --------------------------------------------------


def _watch(p: Parser, toks: list[bytes]) -> Admin:
    return Admin("watch", (), _noreply(_capped(toks)))


def _u32_setting(toks: list[bytes], n: int) -> tuple | None:
    v = strtoul32(toks[2])
    return None if v is None else (v,)


def _double_setting(toks: list[bytes], n: int) -> tuple | None:
    v = strtod(toks[2])
    return None if v is None else (v,)


def _free_memchunks(toks: list[bytes], n: int) -> tuple | None:
    if n <= 4:  # memcached wants a fifth token here; then tries the others
        return None
    cls, limit = strtoul32(toks[2]), strtoul32(toks[3])
    if cls is None or limit is None or cls >= SLAB_CLASSES:
        return None
    return (cls, limit)


# extstore setting -> reader of its value(s); None: memcached's ERROR
_EXTSTORE: dict[bytes, Callable[[list[bytes], int], tuple | None]] = {
    b"free_memchunks": _free_memchunks,  # deprecated and ignored by memcached too
    b"item_size": _u32_setting,
    b"item_age": _u32_setting,
    b"low_ttl": _u32_setting,
    b"recache_rate": _u32_setting,
    b"compact_under": _u32_setting,
    b"drop_under": _u32_setting,
    b"max_sleep": _u32_setting,
    b"max_frag": _double_setting,
    b"drop_unread": _u32_setting,
}


def _extstore(p: Parser, toks: list[bytes]) -> Admin:
    toks = _capped(toks)
    n = len(toks) + 1
    if n < 3:
        raise CommandError()
    noreply = _noreply(toks)
    reader = _EXTSTORE.get(toks[1]) if n >= 4 else None
    value = reader(toks, n) if reader is not None else None
    if value is None:
        raise CommandError(noreply=noreply)
    return Admin("extstore", (toks[1].decode(), *value), noreply)


def _refresh_certs(p: Parser, toks: list[bytes]) -> Admin:
    return Admin("refresh_certs", (), _noreply(_capped(toks)))


COMMANDS = {
    b"slabs": _slabs,
    b"lru_crawler": _lru_crawler,
    b"lru": _lru,
    b"watch": _watch,
    b"extstore": _extstore,
    b"refresh_certs": _refresh_certs,
}


# -- replies ---------------------------------------------------------------------------


def _uriencode(key: bytes) -> bytes:
    """memcached's uriencode: bytes other than [A-Za-z0-9-._~] as %XX."""
    return b"".join(bytes([c]) if c in _URI_SAFE else b"%%%02X" % c for c in key)


def compose_metadump(
    key: bytes, exptime: int, atime: int, cas: int, fetched: bool, cls: int, size: int
) -> bytes:
    """One `lru_crawler metadump` line (newline-terminated, as memcached writes it).

    `exptime` and `atime` are unix seconds (exptime 0: never, printed -1).
    """
    return b"key=%s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\n" % (
        _uriencode(key),
        -1 if exptime == 0 else exptime,
        atime,
        cas,
        b"yes" if fetched else b"no",
        cls,
        size,
    )
