"""Number tokens parsed exactly as memcached's util.c parses them.

memcached reads numbers with C's strtoul/strtol family on 64-bit longs and
then narrows the result, so its quirks are part of the protocol:

- leading whitespace and a `+` sign are accepted; the number may be followed
  by whitespace and anything after it (`5\\tjunk` reads as 5);
- a `-` sign is accepted by the unsigned readers unless the negated value,
  as a signed 64-bit number, is negative (`-0` is 0, `-1` is rejected);
- 32-bit results are the low bits of the 64-bit value (flags 4294967296 is
  0; exptime 4294967297 is 1), exactly as the C casts do.

Every reader returns an int (strtod: a float), or None when memcached's
reader returns false. strtod reads what glibc's does: decimal and hex
floats, inf, infinity and nan; a result that overflows or underflows (to
zero or a subnormal) is ERANGE, i.e. false.
"""

from __future__ import annotations

import math
import re
import sys

__all__ = ["strtod", "strtol32", "strtoll64", "strtoul32", "strtoull64"]

_U64 = 1 << 64
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_SPACES = b" \t\n\v\f\r"


def _scan(tok: bytes) -> tuple[bool, int] | None:
    """(negative, magnitude) of the decimal number strtol would read, or None."""
    n = len(tok)
    i = 0
    while i < n and tok[i] in _SPACES:
        i += 1
    neg = False
    if i < n and tok[i] in b"+-":
        neg = tok[i] == 45
        i += 1
    start = i
    while i < n and 48 <= tok[i] <= 57:
        i += 1
    if i == start:
        return None  # no digits: str == endptr
    if i < n and tok[i] not in _SPACES:
        return None  # trailing garbage right after the digits
    return neg, int(tok[start:i])


def strtoull64(tok: bytes) -> int | None:
    """memcached's safe_strtoull: an unsigned 64-bit number."""
    if tok.isdigit():
        v = int(tok)
        return v if v < _U64 else None
    r = _scan(tok)
    if r is None:
        return None
    neg, mag = r
    if mag >= _U64:
        return None  # ERANGE
    v = (-mag) % _U64 if neg else mag
    if v >= (1 << 63) and b"-" in tok:
        return None
    return v


def strtoul32(tok: bytes) -> int | None:
    """memcached's safe_strtoul: unsigned long parse, narrowed to 32 bits."""
    v = strtoull64(tok)
    return None if v is None else v & 0xFFFFFFFF


def strtoll64(tok: bytes) -> int | None:
    """memcached's safe_strtoll: a signed 64-bit number."""
    if tok.isdigit():
        v = int(tok)
        return v if v <= _I64_MAX else None
    r = _scan(tok)
    if r is None:
        return None
    neg, mag = r
    v = -mag if neg else mag
    if v < _I64_MIN or v > _I64_MAX:
        return None  # ERANGE
    return v


def strtol32(tok: bytes) -> int | None:
    """memcached's safe_strtol: a signed long parse, narrowed to int32."""
    v = strtoll64(tok)
    if v is None:
        return None
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


_FLOAT = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(inf(?:inity)?)|(nan)(?:\([0-9a-z_]*\))?"
    rb"|0x((?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?))",
    re.IGNORECASE,
)


def strtod(tok: bytes) -> float | None:
    """memcached's safe_strtod: a double as glibc's strtod reads it."""
    m = _FLOAT.match(tok)
    if m is None:
        return None
    end = m.end()
    if end < len(tok) and tok[end] not in _SPACES:
        return None  # trailing garbage right after the number
    sign, inf, nan, hexa, dec = m.groups()
    neg = sign == b"-"
    if inf:
        return -math.inf if neg else math.inf
    if nan:
        return math.nan
    if hexa is not None:
        v = float.fromhex("0x" + hexa.decode())
        mantissa = hexa.lower().split(b"p")[0]
    else:
        v = float(dec)
        mantissa = dec.lower().split(b"e")[0]
    if math.isinf(v) or (abs(v) < sys.float_info.min and mantissa.strip(b"0.")):
        return None  # ERANGE: overflow, or underflow to zero or a subnormal
    return -v if neg else v
