"""farserver.compute.strtoull: memcached's safe_strtoull on an item's data.

memcached (util.c) reads incr/decr values with strtoull on the item data,
which ends in "\\r\\n": leading whitespace and a sign are skipped, digits
read, and the next byte must be whitespace or NUL (or the end); overflow,
no digits, or a '-' on a value >= 2^63 fail (NON_NUMERIC).
"""

from __future__ import annotations

import pytest

from farserver.compute import strtoull


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"0", 0),
        (b"42", 42),
        (b"18446744073709551615", 2**64 - 1),
        (b"  7", 7),
        (b"\t7\r\n", 7),
        (b"+7", 7),
        (b"-0", 0),
        (b"-9223372036854775809", 2**63 - 1),  # negated, it is still >= 0 as a signed long
        (b"7 junk", 7),
        (b"7\x00junk", 7),
        (b"007", 7),
        (b"0" * 5000 + b"7", 7),
    ],
)
def test_numbers(data, value):
    assert strtoull(data) == value


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"-1",
        b"-5",
        b"abc",
        b"7a",
        b"0x10",
        b"18446744073709551616",
        b"-",
        b"+",
        b"- 1",
        b"1.5",
    ],
)
def test_non_numbers(data):
    assert strtoull(data) is None
