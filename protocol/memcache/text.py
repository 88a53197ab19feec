"""memcached's classic text commands: one parser per command, in a table.

Each parser takes the Parser and the command line's tokens (split on spaces,
as memcached's tokenizer does) and returns a Request, or None for a storage
command whose data block follows. Checks run in memcached 1.6's order, with
its exact error lines: a wrong token count is `ERROR`; a bad key or number
is the CLIENT_ERROR memcached sends. Classic commands honour `noreply` even
for their errors (memcached suppresses those lines too).

Facts from memcached 1.6 (checked against Debian's memcached 1.6.18):
- keys are at most 250 bytes; they may hold any byte but space and newline;
- `noreply` is recognized only as the last token;
- a value is too large when its item would exceed the item size limit:
  56 + len(key) + 1 + (len(value) + 2) + (4 if flags else 0) > item_size_max
  (memcached's item header with cas, its key, and its data with \\r\\n);
- a refused value (too large) is swallowed, and the parser returns a
  TooLarge event, not an error: the server has to act on it (requests.py);
  a malformed store line is not swallowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.errors import ClientError, CommandError
from protocol.memcache.numbers import strtol32, strtoul32, strtoull64
from protocol.memcache.requests import (
    Arith,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    Quit,
    Shutdown,
    Stats,
    Store,
    TooLarge,
    Touch,
    Verbosity,
    Version,
)

if TYPE_CHECKING:
    from protocol.memcache.parser import Parser

__all__ = ["COMMANDS", "KEY_MAX_LENGTH", "item_too_large"]

KEY_MAX_LENGTH = 250
ITEM_HEADER = 56  # memcached's item header with its cas, in bytes
BAD_FORMAT = "bad command line format"
DELETE_USAGE = "bad command line format.  Usage: delete <key> [noreply]"


def item_too_large(item_size_max: int, nkey: int, nbytes: int, flags: int) -> bool:
    """True when memcached would refuse this item as too large for the cache."""
    return ITEM_HEADER + nkey + 1 + nbytes + 2 + (4 if flags else 0) > item_size_max


def _noreply(toks: list[bytes]) -> bool:
    return toks[-1] == b"noreply"


def _get(p: Parser, toks: list[bytes]) -> Get:
    if len(toks) < 2:
        raise CommandError()
    keys = toks[1:]
    if max(map(len, keys)) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT)
    return Get("get", keys, False, None)


def _gets(p: Parser, toks: list[bytes]) -> Get:
    req = _get(p, toks)
    req.cmd = "gets"
    req.cas = True
    return req


def _gat(p: Parser, toks: list[bytes], cmd: str = "gat", cas: bool = False) -> Get:
    if len(toks) < 2:
        raise CommandError()
    exptime = strtol32(toks[1])
    if exptime is None:
        raise ClientError("invalid exptime argument")
    keys = toks[2:]
    if keys and max(map(len, keys)) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT)
    return Get(cmd, keys, cas, exptime)


def _gats(p: Parser, toks: list[bytes]) -> Get:
    return _gat(p, toks, "gats", True)


def _store(p: Parser, toks: list[bytes], cmd: str = "set") -> TooLarge | None:
    is_cas = cmd == "cas"
    n = len(toks) + 1  # memcached counts a terminal token
    if n != (7 if is_cas else 6) and n != (8 if is_cas else 7):
        raise CommandError()
    noreply = _noreply(toks)
    key = toks[1]
    if len(key) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT, noreply=noreply)
    f, e, v = toks[2], toks[3], toks[4]
    if f.isdigit() and e.isdigit() and v.isdigit() and len(f) < 10 and len(e) < 10 and len(v) < 10:
        flags, exptime, vlen = int(f), int(e), int(v)  # the common case, exact as is
    else:
        flags, exptime, vlen = strtoul32(f), strtol32(e), strtol32(v)
        if flags is None or exptime is None or vlen is None:
            raise ClientError(BAD_FORMAT, noreply=noreply)
    cas_unique = None
    if is_cas:
        cas_unique = strtoull64(toks[5])
        if cas_unique is None:
            raise ClientError(BAD_FORMAT, noreply=noreply)
    if vlen < 0 or vlen > 0x7FFFFFFF - 2:
        raise ClientError(BAD_FORMAT, noreply=noreply)
    if ITEM_HEADER + len(key) + 3 + vlen + (4 if flags else 0) > p.item_size_max:  # item_too_large
        return p.swallow(vlen + 2, TooLarge(cmd, key, noreply))
    p.expect_block(Store(cmd, key, flags, exptime, b"", cas_unique, noreply), vlen)
    return None


def _storage(cmd: str):
    def parse(p: Parser, toks: list[bytes]) -> TooLarge | None:
        return _store(p, toks, cmd)

    parse.__name__ = f"_{cmd}"
    parse.__doc__ = f"{cmd} <key> <flags> <exptime> <bytes> [noreply]"
    return parse


def _delete(p: Parser, toks: list[bytes]) -> Delete:
    n = len(toks) + 1
    if n < 3 or n > 5:
        raise CommandError()
    noreply = False
    if n > 3:
        hold_is_zero = toks[2] == b"0"
        noreply = _noreply(toks)
        valid = (n == 4 and (hold_is_zero or noreply)) or (n == 5 and hold_is_zero and noreply)
        if not valid:
            raise ClientError(DELETE_USAGE, noreply=noreply)
    key = toks[1]
    if len(key) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT, noreply=noreply)
    return Delete(key, noreply)


def _key_and_number(toks: list[bytes], read, error: str) -> tuple[bytes, int, bool]:
    """`<cmd> <key> <number> [noreply]` (incr, decr, touch): key, number, noreply."""
    n = len(toks) + 1
    if n != 4 and n != 5:
        raise CommandError()
    noreply = _noreply(toks)
    key = toks[1]
    if len(key) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT, noreply=noreply)
    number = read(toks[2])
    if number is None:
        raise ClientError(error, noreply=noreply)
    return key, number, noreply


def _arith(p: Parser, toks: list[bytes], cmd: str = "incr") -> Arith:
    key, delta, noreply = _key_and_number(toks, strtoull64, "invalid numeric delta argument")
    return Arith(cmd, key, delta, noreply)


def _decr(p: Parser, toks: list[bytes]) -> Arith:
    return _arith(p, toks, "decr")


def _touch(p: Parser, toks: list[bytes]) -> Touch:
    key, exptime, noreply = _key_and_number(toks, strtol32, "invalid exptime argument")
    return Touch(key, exptime, noreply)


def _flush_all(p: Parser, toks: list[bytes]) -> FlushAll:
    n = len(toks) + 1
    if n < 2 or n > 4:
        raise CommandError()
    noreply = _noreply(toks)
    delay = 0
    if n != (3 if noreply else 2):
        delay = strtol32(toks[1])
        if delay is None:
            raise ClientError("invalid exptime argument", noreply=noreply)
    return FlushAll(delay, noreply)


def _stats(p: Parser, toks: list[bytes]) -> Stats:
    return Stats(toks[1:])


def _version(p: Parser, toks: list[bytes]) -> Version:
    return Version()


def _quit(p: Parser, toks: list[bytes]) -> Quit:
    return Quit()


def _verbosity(p: Parser, toks: list[bytes]) -> Verbosity:
    n = len(toks) + 1
    if n != 3 and n != 4:
        raise CommandError()
    noreply = _noreply(toks)
    level = strtoul32(toks[1])
    if level is None:
        raise ClientError(BAD_FORMAT, noreply=noreply)
    return Verbosity(level, noreply)


def _shutdown(p: Parser, toks: list[bytes]) -> Shutdown:
    if len(toks) == 1:
        return Shutdown(False)
    if len(toks) == 2 and toks[1] == b"graceful":
        return Shutdown(True)
    return Shutdown(None)


def _cache_memlimit(p: Parser, toks: list[bytes]) -> CacheMemlimit:
    n = len(toks) + 1
    if n != 3 and n != 4:
        raise CommandError()
    noreply = _noreply(toks)
    mb = strtoul32(toks[1])
    if mb is None:
        raise CommandError(noreply=noreply)
    return CacheMemlimit(mb, noreply)


COMMANDS = {
    b"get": _get,
    b"bget": _get,
    b"gets": _gets,
    b"gat": _gat,
    b"gats": _gats,
    b"set": _storage("set"),
    b"add": _storage("add"),
    b"replace": _storage("replace"),
    b"append": _storage("append"),
    b"prepend": _storage("prepend"),
    b"cas": _storage("cas"),
    b"delete": _delete,
    b"incr": _arith,
    b"decr": _decr,
    b"touch": _touch,
    b"flush_all": _flush_all,
    b"stats": _stats,
    b"version": _version,
    b"quit": _quit,
    b"verbosity": _verbosity,
    b"shutdown": _shutdown,
    b"cache_memlimit": _cache_memlimit,
}
