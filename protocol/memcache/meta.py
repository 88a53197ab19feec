"""memcached's meta commands (mg, ms, md, ma, me, mn): parsing and replies.

Syntax (doc/protocol.txt): `<cm> <key> [<datalen>] <flag>*\\r\\n`. A flag is
one character, optionally followed by a token (`T30`, `Oopaque`). One table
says what every flag character reads; every meta command accepts every known
flag and ignores those that don't apply (memcached's shared preparse):

    b  base64 key            c  return cas          C<u64>  compare cas
    D<u64> delta             E<u64> new cas          f  return client flags
    F<u32> client flags      h  return hit-before    I  invalidate / stale
    J<u64> initial value     k  return key           l  return last access
    M<c> mode                N<i32> vivify ttl       O<opaque> copied back
    P, L proxy hints         q  quiet                R<i32> recache ttl
    s  return size           S<n> legacy size        t  return ttl
    T<i32> set ttl           u  no LRU bump          v  return value
    x  md: drop the value, keep the item

Errors, in memcached 1.6's order and words: `mg` alone is `ERROR`; a key over
250 bytes `CLIENT_ERROR bad command line format`; more than 19 tokens
`CLIENT_ERROR options flags [are] too long`; a repeated flag `duplicate flag`,
an unknown one `invalid flag` (md and ma say `invalid or duplicate flag` for
every flag error); opaque tokens are at most 32 bytes with the `O`. A bad
number does not stop the scan: the last message set wins (`Tx Fx` says `bad
token`; a bad F sets none, so `Fx` alone says `bad command line format`). A
`b` key decodes as memcached's lenient base64_decode does. Meta errors are
always sent, even with `q`. After a flag error, ms swallows its data block;
a value too large is swallowed too, reported as a TooLarge event.

Replies: flags come back in request order; `q` hides the nominal reply (EN
for mg, HD for ms/md/ma; not an mg hit, nor ma's reply for an item that N
just created), never errors. E, x, S and s-on-ms are newer than Debian's
1.6.18 and follow current memcached. Checked byte for byte against 1.6.18 by
tests/protocol/test_meta.py.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from protocol.errors import ClientError, CommandError
from protocol.memcache.numbers import strtol32, strtoul32, strtoull64
from protocol.memcache.requests import (
    MetaArith,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaRequest,
    MetaSet,
    TooLarge,
)
from protocol.memcache.text import BAD_FORMAT, KEY_MAX_LENGTH, item_too_large

if TYPE_CHECKING:
    from protocol.memcache.parser import Parser

__all__ = [
    "COMMANDS",
    "MAX_OPAQUE_LENGTH",
    "ItemInfo",
    "compose_ma",
    "compose_md",
    "compose_me",
    "compose_mg_hit",
    "compose_miss",
    "compose_ms",
    "decode_key",
    "encode_key",
]

MAX_OPAQUE_LENGTH = 32  # bytes of an O token, the 'O' included
MAX_TOKENS = 20  # memcached's MFLAG_MAX_OPT_LENGTH, counting a terminal token

# Flag character -> (attribute, reader, error message). Readers: "bool" sets
# True, "int32"/"uint32"/"uint64" read numbers, "mode" takes one character,
# None accepts the flag (it only shapes the reply, or is ignored). A bad F
# token sets no message of its own (memcached's errstr keeps its last value,
# "bad command line format" by default).
_BAD_TOKEN = "bad token in command line format"
_FLAGS: dict[int, tuple[str | None, str | None, str]] = {
    ord("b"): ("binary", "b64", "error decoding key"),
    ord("c"): (None, None, ""),
    ord("C"): ("compare_cas", "uint64", _BAD_TOKEN),
    ord("D"): ("delta", "uint64", "invalid numeric delta value"),
    ord("E"): ("new_cas", "uint64", _BAD_TOKEN),
    ord("f"): (None, None, ""),
    ord("F"): ("client_flags", "uint32", ""),
    ord("h"): (None, None, ""),
    ord("I"): ("invalidate", "bool", ""),
    ord("J"): ("initial", "uint64", "invalid numeric initial value"),
    ord("k"): (None, None, ""),
    ord("l"): (None, None, ""),
    ord("L"): (None, None, ""),
    ord("M"): ("mode", "mode", "incorrect length for M token"),
    ord("N"): ("vivify", "int32", _BAD_TOKEN),
    ord("O"): (None, None, ""),
    ord("P"): (None, None, ""),
    ord("q"): ("quiet", "bool", ""),
    ord("R"): ("recache", "int32", _BAD_TOKEN),
    ord("s"): (None, None, ""),
    ord("S"): (None, None, ""),
    ord("t"): (None, None, ""),
    ord("T"): ("ttl", "int32", _BAD_TOKEN),
    ord("u"): ("no_update", "bool", ""),
    ord("v"): ("value", "bool", ""),
    ord("x"): ("remove_value", "bool", ""),
}
_READERS = {"int32": strtol32, "uint32": strtoul32, "uint64": strtoull64}
_MS_MODES = frozenset(b"EAPRS")
_MA_MODES = frozenset(b"I+D-")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK = bytes(c for c in range(256) if c not in _B64_CHARS)  # skipped when decoding


def decode_key(key: bytes) -> bytes | None:
    """A base64 key decoded as memcached's base64_decode does, or None on failure.

    memcached's decoder is lenient: bytes outside the alphabet are skipped,
    the rest must be a multiple of 4 characters, and decoding stops after
    the first block holding `=` (1 or 2 of them; 3 or 4 fail). So `ab!cd`
    decodes like `abcd` and `YQ==YWJj` like `YQ==`.
    """
    chars = key.translate(None, _B64_JUNK)
    if not chars or len(chars) % 4:
        return None
    eq = chars.find(b"=")
    if eq < 0:
        return base64.b64decode(chars)
    start = eq - eq % 4
    block = chars[start : start + 4]
    pad = block.count(b"=")
    if pad > 2:
        return None
    out = base64.b64decode(chars[:start] + block.replace(b"=", b"A"))
    return out[:-pad]


def encode_key(key: bytes) -> bytes:
    """A binary key as it goes back on the wire (base64)."""
    return base64.b64encode(key)


_PARSED: dict[tuple[bytes, ...], dict] = {}  # flag tokens -> the attributes they set
_PARSED_MAX = 1024  # entries; the cache is cleared when full


def _preparse(req: MetaRequest, toks: list[bytes], start: int, error: str | None) -> bool:
    """Read flag tokens into `req`, as memcached's _meta_flag_preparse does.

    Numeric errors are remembered and parsing goes on; a duplicate or unknown
    flag stops at once. `error` replaces every message (md, ma). Returns True
    if an O (opaque) token is present. Clients repeat the same flag sets, so
    the attributes a valid set without b or O yields are cached.
    """
    flags = toks[start:]
    key = tuple(flags)
    cached = _PARSED.get(key)
    if cached is not None:
        req.__dict__.update(cached)
        req.tokens = flags
        return False
    has_opaque = _parse_flags(req, flags, error)
    if not has_opaque and not req.binary:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        attrs = dict(req.__dict__)
        for name in ("cmd", "key", "tokens"):
            attrs.pop(name, None)
        _PARSED[key] = attrs
    return has_opaque


def _parse_flags(req: MetaRequest, flags: list[bytes], error: str | None) -> bool:
    """The uncached work of _preparse."""
    seen = set()
    has_opaque = False
    failed = False
    failure = BAD_FORMAT  # memcached's errstr: the last message set wins
    for tok in flags:
        c = tok[0]
        if c >= 127 or c in seen:
            raise ClientError(error or "duplicate flag")
        seen.add(c)
        spec = _FLAGS.get(c)
        if spec is None:
            raise ClientError(error or "invalid flag")
        attr, reader, message = spec
        if reader is None:
            if c == 79:  # O
                has_opaque = True
            continue
        ok = True
        if reader == "bool":
            setattr(req, attr, True)
        elif reader == "mode":
            ok = len(tok) == 2
            if ok:
                req.mode = tok[1]
        elif reader == "b64":
            key = decode_key(req.key)
            req.binary = True
            ok = key is not None
            if ok:
                req.key = key
        else:
            v = _READERS[reader](tok[1:])
            ok = v is not None
            if ok:
                setattr(req, attr, v)
        if not ok:
            failed = True
            failure = message or failure
    req.tokens = flags
    if failed:
        raise ClientError(error or failure)
    return has_opaque


def _check_opaque(req: MetaRequest) -> str | None:
    for tok in req.tokens:
        if tok[0] == 79 and len(tok) > MAX_OPAQUE_LENGTH:  # 'O'
            return "opaque token too long"
    return None


def _start(toks: list[bytes], too_long: str) -> bytes:
    if len(toks) < 2:
        raise CommandError()
    key = toks[1]
    if len(key) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT)
    if len(toks) + 1 > MAX_TOKENS:
        raise ClientError(too_long)
    return key


def _mg(p: Parser, toks: list[bytes]) -> MetaGet:
    req = MetaGet("mg", _start(toks, "options flags are too long"), toks)
    if _preparse(req, toks, 2, None):
        err = _check_opaque(req)
        if err:
            raise ClientError(err)
    return req


def _ms(p: Parser, toks: list[bytes]) -> TooLarge | None:
    if len(toks) < 2:
        raise CommandError()
    key = toks[1]
    if len(key) > KEY_MAX_LENGTH or len(toks) == 2:
        raise ClientError(BAD_FORMAT)
    if len(toks) + 1 > MAX_TOKENS:
        raise ClientError("options flags too long")
    vlen = strtol32(toks[2])
    if vlen is None or vlen < 0 or vlen > 0x7FFFFFFF - 2:
        raise ClientError(BAD_FORMAT)
    req = MetaSet("ms", key, toks)
    try:
        has_opaque = _preparse(req, toks, 3, None)
    except ClientError as exc:
        raise p.swallow(vlen + 2, exc) from None
    err = _check_opaque(req) if has_opaque else None
    if req.mode is not None and req.mode not in _MS_MODES:
        err = "invalid mode for ms M token"
    if err:
        raise p.swallow(vlen + 2, ClientError(err))
    if item_too_large(p.item_size_max, len(req.key), vlen, req.client_flags):
        return p.swallow(vlen + 2, TooLarge("ms", req.key, False))
    p.expect_block(req, vlen)
    return None


def _md(p: Parser, toks: list[bytes]) -> MetaDelete:
    req = MetaDelete("md", _start(toks, "options flags too long"), toks)
    if _preparse(req, toks, 2, "invalid or duplicate flag"):
        err = _check_opaque(req)
        if err:
            raise ClientError(err)
    return req


def _ma(p: Parser, toks: list[bytes]) -> MetaArith:
    req = MetaArith("ma", _start(toks, "options flags too long"), toks)
    has_opaque = _preparse(req, toks, 2, "invalid or duplicate flag")
    if req.mode is not None and req.mode not in _MA_MODES:
        raise ClientError("invalid mode for ma M token")
    err = _check_opaque(req) if has_opaque else None
    if err:
        raise ClientError(err)
    return req


def _me(p: Parser, toks: list[bytes]) -> MetaDebug:
    if len(toks) < 2 or len(toks[1]) > KEY_MAX_LENGTH:
        raise ClientError(BAD_FORMAT)
    key = toks[1]
    binary = len(toks) >= 3 and toks[2] == b"b"
    if binary:
        decoded = decode_key(key)
        if decoded is None:
            raise ClientError(BAD_FORMAT)
        key = decoded
    return MetaDebug(key, binary)


def _mn(p: Parser, toks: list[bytes]) -> MetaNoop:
    return MetaNoop()


COMMANDS = {b"mg": _mg, b"ms": _ms, b"md": _md, b"ma": _ma, b"me": _me, b"mn": _mn}


# -- replies ---------------------------------------------------------------


class ItemInfo:
    """What a meta reply may report about an item (filled in by the server)."""

    __slots__ = ("key", "size", "client_flags", "cas", "ttl", "last_access", "fetched", "binary")

    def __init__(
        self,
        key: bytes,
        size: int,
        client_flags: int = 0,
        cas: int = 0,
        ttl: int = -1,
        last_access: int = 0,
        fetched: bool = False,
        binary: bool = False,
    ):
        self.key = key
        self.size = size  # value length in bytes
        self.client_flags = client_flags  # uint32
        self.cas = cas  # uint64
        self.ttl = ttl  # seconds left, -1 for never
        self.last_access = last_access  # seconds since last access
        self.fetched = fetched  # fetched before this request
        self.binary = binary  # key was stored with b: return it base64


def _key_flag(key: bytes, binary: bool) -> bytes:
    return b" k" + encode_key(key) + b" b" if binary else b" k" + key


_MG_RETURN = {
    ord("s"): lambda it: b" s%d" % it.size,
    ord("t"): lambda it: b" t%d" % it.ttl,
    ord("c"): lambda it: b" c%d" % it.cas,
    ord("f"): lambda it: b" f%d" % it.client_flags,
    ord("l"): lambda it: b" l%d" % it.last_access,
    ord("h"): lambda it: b" h1" if it.fetched else b" h0",
    ord("k"): lambda it: _key_flag(it.key, it.binary),
}


def compose_mg_hit(
    req: MetaRequest,
    item: ItemInfo,
    *,
    won: bool = False,
    stale: bool = False,
    token_sent: bool = False,
) -> bytes:
    """The mg reply line for a hit ("VA <size> ..." or "HD ..."), \\r\\n included.

    With `v` the caller writes the value and b"\\r\\n" after this line.
    Z (another client won), X (stale) and W (this client won) come last.
    """
    out = [b"VA %d" % item.size if req.value else b"HD"]
    for tok in req.tokens:
        c = tok[0]
        f = _MG_RETURN.get(c)
        if f is not None:
            out.append(f(item))
        elif c == 79:  # O
            out.append(b" " + tok)
    if token_sent:
        out.append(b" Z")
    if stale:
        out.append(b" X")
    if won:
        out.append(b" W")
    out.append(b"\r\n")
    return b"".join(out)


def _echo(req: MetaRequest, out: list[bytes], key: bytes, binary: bool) -> None:
    """Append the O and k flags of `req`, in request order."""
    for tok in req.tokens:
        c = tok[0]
        if c == 79:  # O
            out.append(b" " + tok)
        elif c == 107:  # k
            out.append(_key_flag(key, binary))


def compose_miss(req: MetaRequest, code: bytes = b"EN") -> bytes:
    """A reply carrying only O and k flags: EN (mg), NF, NS or EX.

    b"" when `q` hides it: mg's EN is quiet; NF/NS/EX always return.
    """
    if req.quiet and code == b"EN":
        return b""
    out = [code]
    _echo(req, out, req.key, req.binary)
    out.append(b"\r\n")
    return b"".join(out)


def compose_ms(req: MetaRequest, code: bytes, cas: int = 0) -> bytes:
    """The ms reply (HD, NS, EX, NF) with O, k and c flags; b"" for a quiet HD."""
    if req.quiet and code == b"HD":
        return b""
    out = [code]
    for tok in req.tokens:
        c = tok[0]
        if c == 79:
            out.append(b" " + tok)
        elif c == 107:
            out.append(_key_flag(req.key, req.binary))
        elif c == 99:  # c
            out.append(b" c%d" % cas)
    out.append(b"\r\n")
    return b"".join(out)


def compose_md(req: MetaRequest, code: bytes) -> bytes:
    """The md reply (HD, NF, EX) with O and k flags; b"" for a quiet HD."""
    if req.quiet and code == b"HD":
        return b""
    out = [code]
    _echo(req, out, req.key, req.binary)
    out.append(b"\r\n")
    return b"".join(out)


def compose_ma(
    req: MetaRequest, value: int, cas: int = 0, ttl: int = -1, *, created: bool = False
) -> bytes:
    """The successful ma reply: "HD ..." or "VA <n> ...\\r\\n<number>", \\r\\n included.

    Failures (NF, NS, EX) use compose_miss. b"" when `q` hides a success;
    `q` does not hide the reply for an item N just `created` (memcached
    1.6.18 skips only its OK path: `ma k q N0` on a miss answers HD).
    """
    if req.quiet and not created:
        return b""
    number = b"%d" % value
    out = [b"VA %d" % len(number) if req.value else b"HD"]
    for tok in req.tokens:
        c = tok[0]
        if c == 99:  # c
            out.append(b" c%d" % cas)
        elif c == 116:  # t
            out.append(b" t%d" % ttl)
        elif c == 79:
            out.append(b" " + tok)
        elif c == 107:
            out.append(_key_flag(req.key, req.binary))
    out.append(b"\r\n")
    if req.value:
        out.append(number + b"\r\n")
    return b"".join(out)


def compose_me(
    key: bytes,
    binary: bool,
    *,
    exp: int,
    la: int,
    cas: int,
    fetched: bool,
    cls: int,
    size: int,
) -> bytes:
    """The `me` debug line: ME <key> exp=.. la=.. cas=.. fetch=.. cls=.. size=.."""
    k = encode_key(key) if binary else key
    return b"ME %s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\r\n" % (
        k,
        exp,
        la,
        cas,
        b"yes" if fetched else b"no",
        cls,
        size,
    )
