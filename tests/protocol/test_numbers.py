"""Tests for protocol/memcache/numbers.py: numbers read exactly as memcached reads them.

Spec: doc/protocol.txt types the numbers (<flags> "16-bit unsigned integer"
or 32 in memcached 1.2.1+, <exptime>, <bytes>, <cas unique> "64-bit
unsigned", incr/decr <value> "64-bit unsigned integer"), but what is
accepted is memcached 1.6.18's util.c: safe_strtoul, safe_strtol,
safe_strtoull and safe_strtoll over glibc's strtoul/strtol family with
64-bit longs, the result cast to the field's C type:

    flags, verbosity, cache_memlimit  safe_strtoul   uint32 (low 32 bits)
    exptime, <bytes>                  safe_strtol    int32 (low 32 bits)
    cas unique, incr/decr delta       safe_strtoull  uint64
    (meta and debug readers)          safe_strtoll   int64

Three oracles: a table of tokens and values; a property test against glibc
itself (ctypes) inside a line-for-line port of util.c; and the wire, where
live memcached 1.6.18 shows what it stored (flags 4294967296 reads back 0).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

import pytest
from cases import Case, ask, err
from cases import case as C
from helpers import check
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.memcache import Arith, Get, Store
from protocol.memcache.numbers import strtol32, strtoll64, strtoul32, strtoull64

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
I64 = (1 << 63) - 1

# -- the readers, token by token ---------------------------------------------------

UNSIGNED_64 = [
    (b"0", 0),
    (b"5", 5),
    (b"+5", 5),
    (b"007", 7),
    (b"-0", 0),
    (b"-1", None),  # strtoull gives 2**64-1, and the token has a '-'
    (b"18446744073709551615", U64),
    (b"18446744073709551616", None),  # ERANGE
    (b"-18446744073709551615", 1),  # strtoull negates modulo 2**64: 1 has no sign bit
    (b"-18446744073709551616", None),  # ERANGE
    (b"9223372036854775808", 1 << 63),
    (b"-9223372036854775808", None),  # 2**63: sign bit set and a '-'
    (b"-9223372036854775809", I64),  # 2**63-1: no sign bit, so the '-' is fine
    (b"5\tjunk", 5),  # whitespace after the digits ends the number
    (b"5\r", 5),
    (b"5\x0b\x0c", 5),
    (b"\t 5", 5),  # strtoull skips leading whitespace
    (b"18446744073709551615\t-", None),  # memcached looks for '-' in the whole token
    (b"5junk", None),
    (b"0x10", None),
    (b"1e3", None),
    (b"", None),
    (b"-", None),
    (b"+", None),
    (b"+-5", None),
    (b"- 5", None),
    (b"\t", None),
    (b"junk", None),
    (b"\xd9\xa3", None),  # a non-ASCII digit
]

UNSIGNED_32 = [
    (b"0", 0),
    (b"4294967295", U32),
    (b"4294967296", 0),  # the low 32 bits of the unsigned long
    (b"4294967297", 1),
    (b"18446744073709551615", U32),
    (b"18446744073709551616", None),
    (b"-0", 0),
    (b"-1", None),
    (b"-4294967295", None),
    (b"-9223372036854775809", U32),  # strtoul: 2**63-1, no sign bit
    (b"+7", 7),
    (b"5\tjunk", 5),
    (b"5junk", None),
    (b"", None),
]

SIGNED_64 = [
    (b"0", 0),
    (b"-1", -1),
    (b"+1", 1),
    (b"-0", 0),
    (b"9223372036854775807", I64),
    (b"9223372036854775808", None),  # ERANGE
    (b"-9223372036854775808", -(1 << 63)),
    (b"-9223372036854775809", None),
    (b"18446744073709551615", None),
    (b"\t-5\tx", -5),
    (b"-5x", None),
    (b"--5", None),
    (b"", None),
]

SIGNED_32 = [
    (b"0", 0),
    (b"-1", -1),
    (b"2147483647", 2147483647),
    (b"2147483648", -2147483648),  # the low 32 bits, as the int32_t cast keeps them
    (b"4294967295", -1),
    (b"4294967296", 0),
    (b"4294967297", 1),
    (b"9999999999999", 1316134911),
    (b"-2147483649", 2147483647),
    (b"9223372036854775807", -1),
    (b"9223372036854775808", None),
    (b"-9223372036854775808", 0),
    (b"99999999999999999999", None),
    (b"-0", 0),
    (b"+30", 30),
    (b"30\tjunk", 30),
    (b"30s", None),
    (b"", None),
]


@pytest.mark.parametrize("tok, value", UNSIGNED_64)
def test_strtoull64(tok: bytes, value: int | None):
    assert strtoull64(tok) == value


@pytest.mark.parametrize("tok, value", UNSIGNED_32)
def test_strtoul32(tok: bytes, value: int | None):
    assert strtoul32(tok) == value


@pytest.mark.parametrize("tok, value", SIGNED_64)
def test_strtoll64(tok: bytes, value: int | None):
    assert strtoll64(tok) == value


@pytest.mark.parametrize("tok, value", SIGNED_32)
def test_strtol32(tok: bytes, value: int | None):
    assert strtol32(tok) == value


def test_readers_return_ints():
    for reader in (strtoull64, strtoul32, strtoll64, strtol32):
        assert type(reader(b"5")) is int
        assert type(reader(b"\t+5\t")) is int


# -- against glibc, through a port of memcached's util.c ---------------------------

_LIBC_NAME = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_LIBC_NAME, use_errno=True) if _LIBC_NAME else None
needs_glibc = pytest.mark.skipif(
    _libc is None or ctypes.sizeof(ctypes.c_long) != 8, reason="needs a C library, LP64"
)


def _c_strto(name: str, restype: type, tok: bytes) -> tuple[int, bool, int]:
    """(value, errno == ERANGE, endptr offset) of C's strto*(tok, &end, 10)."""
    fn = getattr(_libc, name)
    fn.restype = restype
    fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    buf = ctypes.create_string_buffer(tok)
    end = ctypes.c_void_p()
    ctypes.set_errno(0)
    value = fn(ctypes.addressof(buf), ctypes.byref(end), 10)
    return value, ctypes.get_errno() == errno.ERANGE, end.value - ctypes.addressof(buf)


def _ends_well(tok: bytes, offset: int) -> bool:
    """util.c: xisspace(*endptr) || (*endptr == '\\0' && endptr != str)."""
    if offset == len(tok):
        return offset != 0
    return bool(_libc.isspace(tok[offset]))


def _c_safe_unsigned(name: str, restype: type, tok: bytes) -> int | None:
    """safe_strtoul / safe_strtoull: the unsigned value, or None for false."""
    value, erange, offset = _c_strto(name, restype, tok)
    if erange or offset == 0 or not _ends_well(tok, offset):
        return None
    if value >= 1 << 63 and b"-" in tok:  # (long) l < 0 && strchr(str, '-')
        return None
    return value


def _c_safe_signed(name: str, restype: type, tok: bytes) -> int | None:
    """safe_strtol / safe_strtoll: the signed value, or None for false."""
    value, erange, offset = _c_strto(name, restype, tok)
    if erange or offset == 0 or not _ends_well(tok, offset):
        return None
    return value


def _memcached_readers(tok: bytes) -> tuple:
    return (
        _c_safe_unsigned("strtoull", ctypes.c_ulonglong, tok),
        None if (v := _c_safe_unsigned("strtoul", ctypes.c_ulong, tok)) is None else v & U32,
        _c_safe_signed("strtoll", ctypes.c_longlong, tok),
        None
        if (v := _c_safe_signed("strtol", ctypes.c_long, tok)) is None
        else ctypes.c_int32(v).value,
    )


def _our_readers(tok: bytes) -> tuple:
    return (strtoull64(tok), strtoul32(tok), strtoll64(tok), strtol32(tok))


_BOUNDS = [0, 1, 1 << 31, 1 << 32, 1 << 63, 1 << 64, 10**19, 10**20]
_SPACE = st.sampled_from([b"", b" ", b"\t", b"\n", b"\v", b"\f", b"\r", b"\t\t"])
_NUMBERS = st.builds(
    lambda lead, sign, n, trail: lead + sign + str(n).encode() + trail,
    _SPACE,
    st.sampled_from([b"", b"+", b"-", b"--", b"+-"]),
    st.sampled_from(_BOUNDS).flatmap(lambda b: st.integers(max(b - 2, 0), b + 2))
    | st.integers(0, 1 << 66),
    st.sampled_from([b"", b"\t", b"\tjunk", b"junk", b"\r", b"\x0b-", b"-", b"0x", b"\t-1"]),
)
_JUNK = st.text(alphabet="0123456789+- \t\r\n\v\fxe.", max_size=24).map(str.encode)


@needs_glibc
@pytest.mark.parametrize(
    "tok", [t for t, _ in UNSIGNED_64 + UNSIGNED_32 + SIGNED_64 + SIGNED_32 if b"\x00" not in t]
)
def test_table_matches_glibc(tok: bytes):
    assert _our_readers(tok) == _memcached_readers(tok)


@needs_glibc
@settings(max_examples=400, deadline=None)
@given(_NUMBERS | _JUNK)
def test_readers_match_glibc(tok: bytes):
    """Any NUL-free token reads as util.c over glibc reads it (tokens end at NUL)."""
    assert _our_readers(tok) == _memcached_readers(tok)


# -- on the wire, against memcached 1.6.18 -----------------------------------------

STORED = b"STORED\r\n"
END = b"END\r\n"
ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"


def _set(key: bytes, flags: int = 0, exptime: int = 0, value: bytes = b"a") -> Store:
    return Store("set", key, flags, exptime, value, None, False)


def _get(key: bytes) -> Get:
    return Get("get", [key], False, None)


def _hit(key: bytes, flags: int, value: bytes = b"a") -> bytes:
    return b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


def _set_get(id: str, key: bytes, flags_tok: bytes, flags: int) -> Case:
    return C(
        id,
        b"set %s %s 0 1\r\na\r\nget %s\r\n" % (key, flags_tok, key),
        (_set(key, flags), STORED),
        (_get(key), _hit(key, flags)),
    )


WIRE_CASES = [
    _set_get("flags-max", b"nm-f1", b"4294967295", U32),
    _set_get("flags-wrap-to-0", b"nm-f2", b"4294967296", 0),
    _set_get("flags-wrap-to-1", b"nm-f3", b"4294967297", 1),
    _set_get("flags-minus-zero", b"nm-f4", b"-0", 0),
    _set_get("flags-plus", b"nm-f5", b"+7", 7),
    _set_get("flags-tab-junk", b"nm-f6", b"5\tjunk", 5),
    _set_get("flags-u64-max", b"nm-f7", b"18446744073709551615", U32),
    _set_get("flags-negative-no-sign-bit", b"nm-f8", b"-9223372036854775809", U32),
    C("flags-minus-one", b"set nm-f9 -1 0 1\r\na\r\n", err(BAD_FORMAT), err(ERROR)),
    C("flags-hex", b"set nm-f9 0x10 0 1\r\na\r\n", err(BAD_FORMAT), err(ERROR)),
    C(
        "flags-out-of-range",
        b"set nm-f9 18446744073709551616 0 1\r\na\r\n",
        err(BAD_FORMAT),
        err(ERROR),
    ),
    C("flags-minus-4294967295", b"set nm-f9 -4294967295 0 1\r\na\r\n", err(BAD_FORMAT), err(ERROR)),
    C(
        "exptime-huge-narrowed",  # low 32 bits: 1316134911, an absolute time in 2011
        b"set nm-e1 0 9999999999999 1\r\na\r\nget nm-e1\r\n",
        (_set(b"nm-e1", exptime=1316134911), STORED),
        (_get(b"nm-e1"), END),
    ),
    C(
        "exptime-narrowed-to-0",
        b"set nm-e2 0 4294967296 1\r\na\r\nget nm-e2\r\n",
        (_set(b"nm-e2"), STORED),
        (_get(b"nm-e2"), _hit(b"nm-e2", 0)),
    ),
    C(
        "exptime-leading-tab",
        b"set nm-e3 0 \t0 1\r\na\r\nget nm-e3\r\n",
        (_set(b"nm-e3"), STORED),
        (_get(b"nm-e3"), _hit(b"nm-e3", 0)),
    ),
    C(
        "exptime-out-of-range",
        b"set nm-e4 0 9223372036854775808 1\r\na\r\n",
        err(BAD_FORMAT),
        err(ERROR),
    ),
    C(
        "length-minus-zero",
        b"set nm-l1 0 0 -0\r\n\r\nget nm-l1\r\n",
        (_set(b"nm-l1", value=b""), STORED),
        (_get(b"nm-l1"), _hit(b"nm-l1", 0, b"")),
    ),
    C(
        "length-narrowed",
        b"set nm-l2 0 0 4294967298\r\nab\r\nget nm-l2\r\n",
        (_set(b"nm-l2", value=b"ab"), STORED),
        (_get(b"nm-l2"), _hit(b"nm-l2", 0, b"ab")),
    ),
    C(
        "delta-negative-wraps-to-1",  # strtoull("-18446744073709551615") is 1
        b"set nm-d1 0 0 2\r\n10\r\nincr nm-d1 -18446744073709551615\r\n",
        (_set(b"nm-d1", value=b"10"), STORED),
        (Arith("incr", b"nm-d1", 1, False), b"11\r\n"),
    ),
    C(
        "delta-plus-and-junk",
        b"set nm-d2 0 0 2\r\n10\r\nincr nm-d2 +5\r\ndecr nm-d2 3\tjunk\r\n",
        (_set(b"nm-d2", value=b"10"), STORED),
        (Arith("incr", b"nm-d2", 5, False), b"15\r\n"),
        (Arith("decr", b"nm-d2", 3, False), b"12\r\n"),
    ),
    C(
        "delta-u64-max",
        b"set nm-d3 0 0 1\r\n1\r\nincr nm-d3 18446744073709551615\r\n",
        (_set(b"nm-d3", value=b"1"), STORED),
        (Arith("incr", b"nm-d3", U64, False), b"0\r\n"),
    ),
    C("delta-sign-after-space", b"incr nm-d4 18446744073709551615\t-\r\n", err(BAD_DELTA)),
    C("delta-minus-2-63", b"incr nm-d4 -9223372036854775808\r\n", err(BAD_DELTA)),
    C(
        "cas-minus-zero",
        b"cas nm-c1 0 0 1 -0\r\na\r\n",
        (Store("cas", b"nm-c1", 0, 0, b"a", 0, False), b"NOT_FOUND\r\n"),
    ),
]


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.id for c in WIRE_CASES])
def test_wire_case_parses(case: Case):
    assert check(case.data) == case.ours


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.id for c in WIRE_CASES])
def test_wire_cases_match_memcached(memcached, case: Case):
    """memcached 1.6.18 stores and reads back the numbers as our readers read them."""
    assert ask(memcached, case.data) == (case.theirs, case.closes)
