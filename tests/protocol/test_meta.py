"""Tests for protocol/memcache/meta.py: memcached's meta commands, parsed and composed.

Spec: memcached's doc/protocol.txt, "Meta Commands" and the sections for
mg, ms, md, ma, me and mn: `<cm> <key> <datalen*> <flag>*\\r\\n`, flags of
one character with an optional token, returned in request order. The
reference is Debian's memcached 1.6.18, run by the `memcached` fixture:

- every error case below is a row of ERRORS, (input, the bytes 1.6.18
  answered); the parser must produce exactly those lines, and
  test_errors_match_memcached checks that memcached still answers them;
- every reply composer is checked byte for byte against the reply memcached
  gives for the same command on the same item (cas, size, flags taken from
  memcached's own answers);
- E (new cas), x (md: drop the value) and S (legacy size) come from current
  memcached; our parser accepts them, 1.6.18 answers `CLIENT_ERROR invalid
  flag` (or `invalid or duplicate flag`), so they have parse tests only.

Every parser test feeds its input whole, one byte at a time and with
trailing data (helpers.check); inputs over 64 KiB are fed whole and in
1460-byte chunks instead.
"""

from __future__ import annotations

import base64
import itertools
import re
import socket
import time

import pytest
from helpers import TRAILER, check, run

from protocol import error_line
from protocol.memcache import (
    NEED_DATA,
    ItemInfo,
    MetaArith,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Parser,
    TooLarge,
    compose_ma,
    compose_md,
    compose_me,
    compose_mg_hit,
    compose_miss,
    compose_ms,
    decode_key,
    encode_key,
)

_CLASSES = {b"mg": MetaGet, b"ms": MetaSet, b"md": MetaDelete, b"ma": MetaArith}
_SEQ = itertools.count()


def _one(data: bytes):
    """The single event `data` parses to (checked whole, bytewise, trailing)."""
    events = check(data)
    assert len(events) == 1, events
    return events[0]


def _req(data: bytes):
    """The request event for one complete command (no error expected)."""
    p = Parser()
    p.feed(data)
    ev = p.next_event()
    assert ev is not NEED_DATA
    assert p.next_event() is NEED_DATA
    return ev


def _expected(cmd: bytes, key: bytes, flags: list[bytes], **fields):
    """The request the parser should produce: defaults plus `fields`."""
    req = _CLASSES[cmd](cmd.decode(), key, flags)
    req.tokens = flags
    for name, value in fields.items():
        setattr(req, name, value)
    return req


# -- parsing: every command with every flag ------------------------------------

# (flag token, fields it sets; {} for flags that only shape the reply or are
# ignored). M is listed per command below: its valid modes differ.
FLAGS = [
    (b"c", {}),
    (b"C12345", {"compare_cas": 12345}),
    (b"C18446744073709551615", {"compare_cas": 2**64 - 1}),
    (b"D7", {"delta": 7}),
    (b"f", {}),
    (b"F4294967295", {"client_flags": 4294967295}),
    (b"h", {}),
    (b"I", {"invalidate": True}),
    (b"J42", {"initial": 42}),
    (b"k", {}),
    (b"l", {}),
    (b"L/path/", {}),  # proxy hint: ignored
    (b"N30", {"vivify": 30}),
    (b"O", {}),  # an empty opaque is copied back as " O"
    (b"Oopaque-1", {}),
    (b"O" + b"x" * 31, {}),  # 32 bytes with the O: the longest allowed
    (b"P/route", {}),  # proxy hint: ignored
    (b"q", {"quiet": True}),
    (b"R10", {"recache": 10}),
    (b"s", {}),
    (b"t", {}),
    (b"T-1", {"ttl": -1}),
    (b"T0", {"ttl": 0}),
    (b"u", {"no_update": True}),
    (b"v", {"value": True}),
]
# Newer than 1.6.18 (which rejects them as invalid flags): parse tests only.
NEWER_FLAGS = [
    (b"E99", {"new_cas": 99}),
    (b"S100", {}),
    (b"x", {"remove_value": True}),
]
MODES = {
    b"mg": [b"MX"],  # mg and md read M but ignore it (1.6.18: no error)
    b"md": [b"MX"],
    b"ms": [b"ME", b"MA", b"MP", b"MR", b"MS"],
    b"ma": [b"MI", b"M+", b"MD", b"M-"],
}


def _line(cmd: bytes, key: bytes, flags: list[bytes]) -> bytes:
    """A command line, with a 2-byte data block for ms."""
    if cmd == b"ms":
        return b" ".join([cmd, key, b"2", *flags]) + b"\r\nhi\r\n"
    return b" ".join([cmd, key, *flags]) + b"\r\n"


def _flag_params(flags):
    return [
        pytest.param(cmd, tok, fields, id=f"{cmd.decode()}-{tok.decode()[:12]}")
        for cmd in _CLASSES
        for tok, fields in flags
    ]


def _mode_params():
    return [
        pytest.param(cmd, tok, {"mode": tok[1]}, id=f"{cmd.decode()}-{tok.decode()}")
        for cmd, toks in MODES.items()
        for tok in toks
    ]


@pytest.mark.parametrize(
    ("cmd", "tok", "fields"), _flag_params(FLAGS + NEWER_FLAGS) + _mode_params()
)
def test_every_flag_parses(cmd, tok, fields):
    """Each command accepts each flag and records what it carries."""
    ev = _one(_line(cmd, b"key", [tok]))
    extra = {"data": b"hi"} if cmd == b"ms" else {}
    assert ev == _expected(cmd, b"key", [tok], **fields, **extra)


@pytest.mark.parametrize("cmd", list(_CLASSES))
def test_no_flags_gives_defaults(cmd):
    """Without flags every field keeps its documented default."""
    ev = _one(_line(cmd, b"key", []))
    assert ev.key == b"key" and ev.tokens == []
    assert not (ev.binary or ev.quiet or ev.value or ev.no_update or ev.invalidate)
    assert (ev.vivify, ev.ttl, ev.recache, ev.compare_cas, ev.new_cas, ev.mode) == (None,) * 6
    assert (ev.client_flags, ev.delta, ev.initial) == (0, 1, 0)
    assert ev.data == (b"hi" if cmd == b"ms" else b"")


@pytest.mark.parametrize("cmd", list(_CLASSES))
def test_base64_key(cmd):
    """b: the key is base64 on the wire and decoded in the event."""
    wire = base64.b64encode(b"\x00bin\xffkey")
    ev = _one(_line(cmd, wire, [b"b", b"k"]))
    assert ev.key == b"\x00bin\xffkey" and ev.binary
    assert ev.tokens == [b"b", b"k"]


@pytest.mark.parametrize(
    ("wire", "key"),
    [
        (b"YWJj", b"abc"),
        (b"YQ==", b"a"),
        (b"YWI=", b"ab"),
        (b"ab!cd", base64.b64decode(b"abcd")),  # bytes outside the alphabet are skipped
        (b"Y\xffWJj", b"abc"),
        (b"YQ==YWJj", b"a"),  # decoding stops after the first padded block
        (b"QQ=A", b"A\x00"),  # '=' counts as 0 wherever it is in its block
        (b"==AA", b"\x00"),
    ],
)
def test_base64_decoding_is_memcacheds(wire, key):
    """decode_key follows memcached's lenient base64_decode (live: test_mg_binary_miss)."""
    assert decode_key(wire) == key
    assert _one(b"mg " + wire + b" b\r\n").key == key


@pytest.mark.parametrize("wire", [b"", b"abc", b"A===", b"====", b"!!!!", b"YWJjZ"])
def test_base64_decoding_failures(wire):
    """No decodable group of 4, or 3-4 '=' in a block: memcached's ret == 0."""
    assert decode_key(wire) is None


def test_encode_key_round_trip():
    """encode_key is standard base64, as memcached's base64_encode."""
    for key in (b"a", b"ab", b"abc", bytes(range(256))):
        assert decode_key(encode_key(key)) == key


def test_flags_keep_request_order():
    """tokens keeps every flag token in request order, for the reply."""
    toks = [b"Oxy", b"k", b"v", b"T30", b"c", b"q", b"s", b"f", b"t", b"N5", b"R3"]
    ev = _one(b"mg key " + b" ".join(toks) + b"\r\n")
    assert ev.tokens == toks
    assert (ev.value, ev.quiet, ev.ttl, ev.vivify, ev.recache) == (True, True, 30, 5, 3)


def test_spaces_and_newlines():
    """Runs of spaces separate tokens; a bare \\n ends a line like \\r\\n."""
    assert _one(b"mg   key   v  k \r\n") == _expected(b"mg", b"key", [b"v", b"k"], value=True)
    assert _one(b"mg key v\n") == _expected(b"mg", b"key", [b"v"], value=True)


def test_nineteen_tokens_is_the_limit():
    """mg + key + 17 flags (19 tokens) parses; one more is too long."""
    flags = [bytes([c]) for c in b"cfhklqstuvIPLO"] + [b"T1", b"N2", b"R3"]
    ev = _one(b"mg key " + b" ".join(flags) + b"\r\n")
    assert ev.tokens == flags


def test_key_of_250_bytes():
    """Keys up to 250 bytes parse."""
    assert _one(b"mg " + b"k" * 250 + b" v\r\n").key == b"k" * 250


@pytest.mark.parametrize("value", [b"", b"a", b"x\r\ny", b"\r\n", b"\x00" * 100, b"mn\r\n"])
def test_ms_data_block(value):
    """ms reads exactly <datalen> bytes and their \\r\\n, whatever they hold."""
    ev = _one(b"ms key %d T0 F3\r\n%s\r\n" % (len(value), value))
    assert ev == _expected(b"ms", b"key", [b"T0", b"F3"], ttl=0, client_flags=3, data=value)


def test_ms_block_split_from_its_line():
    """The data block may arrive in any chunks after its line."""
    p = Parser()
    p.feed(b"ms key 5 c\r\nhel")
    assert p.next_event() is NEED_DATA
    p.feed(b"lo\r")
    assert p.next_event() is NEED_DATA
    p.feed(b"\n")
    assert p.next_event() == _expected(b"ms", b"key", [b"c"], data=b"hello")


def test_ms_numbers_read_like_memcached():
    """F wraps to 32 bits and T to int32, as memcached's casts do."""
    ev = _one(b"ms key 1 F4294967297 T+5\r\nx\r\n")
    assert (ev.client_flags, ev.ttl) == (1, 5)


@pytest.mark.parametrize(
    ("line", "key", "binary"),
    [
        (b"me key\r\n", b"key", False),
        (b"me a2V5 b\r\n", b"key", True),
        (b"me a2V5 bx\r\n", b"a2V5", False),  # only a bare 'b' token means base64
        (b"me key q v\r\n", b"key", False),  # other tokens are ignored
    ],
)
def test_me(line, key, binary):
    """me <key> [b]: the debug command."""
    assert _one(line) == MetaDebug(key, binary)


@pytest.mark.parametrize("line", [b"mn\r\n", b"mn anything at all\r\n", b"mn q\r\n"])
def test_mn(line):
    """mn ignores its arguments."""
    assert _one(line) == MetaNoop()


def test_pipelined_meta_commands():
    """Several meta commands in one read come out in order."""
    data = b"mg a v\r\nms b 1 q\r\nx\r\nmd c q\r\nma d v\r\nme e\r\nmn\r\n"
    assert check(data) == [
        _expected(b"mg", b"a", [b"v"], value=True),
        _expected(b"ms", b"b", [b"q"], quiet=True, data=b"x"),
        _expected(b"md", b"c", [b"q"], quiet=True),
        _expected(b"ma", b"d", [b"v"], value=True),
        MetaDebug(b"e", False),
        MetaNoop(),
    ]


# -- errors: exact lines, checked against memcached 1.6.18 ---------------------

K251 = b"a" * 251
O33 = b"O" + b"x" * 32  # one byte over the opaque limit
V18 = b" ".join([b"v"] * 18)  # with mg and the key: 20 tokens
BIG = 2_000_000  # bytes: over the 1 MiB item limit

ERR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
DUP = b"CLIENT_ERROR duplicate flag\r\n"
INVALID = b"CLIENT_ERROR invalid flag\r\n"
INV_OR_DUP = b"CLIENT_ERROR invalid or duplicate flag\r\n"
OPAQUE = b"CLIENT_ERROR opaque token too long\r\n"
M_LENGTH = b"CLIENT_ERROR incorrect length for M token\r\n"
MS_MODE = b"CLIENT_ERROR invalid mode for ms M token\r\n"
MA_MODE = b"CLIENT_ERROR invalid mode for ma M token\r\n"
DECODE = b"CLIENT_ERROR error decoding key\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
MN = b"MN\r\n"

# (id, input, memcached 1.6.18's reply). "<k>" is replaced by a key unique to
# the row. Every input ends with mn, so a row also shows what was swallowed.
ERRORS = [
    # mg
    ("mg-alone", b"mg\r\n", ERR),
    ("mg-key-251", b"mg " + K251 + b" v\r\n", BAD_FORMAT),
    ("mg-20-tokens", b"mg <k> " + V18 + b"\r\n", b"CLIENT_ERROR options flags are too long\r\n"),
    (
        "mg-21-tokens-q",
        b"mg <k> " + V18 + b" q\r\n",
        b"CLIENT_ERROR options flags are too long\r\n",
    ),
    ("mg-dup", b"mg <k> v v\r\n", DUP),
    ("mg-dup-q", b"mg <k> v q v\r\n", DUP),
    ("mg-flag-0xff", b"mg <k> \xff\r\n", DUP),  # bytes >= 127 count as duplicates
    ("mg-flag-0x7f", b"mg <k> \x7f\r\n", DUP),
    ("mg-invalid-y", b"mg <k> y\r\n", INVALID),
    ("mg-invalid-1", b"mg <k> 1\r\n", INVALID),
    ("mg-invalid-A", b"mg <k> A\r\n", INVALID),
    ("mg-T-abc", b"mg <k> Tabc\r\n", BAD_TOKEN),
    ("mg-T-empty", b"mg <k> T\r\n", BAD_TOKEN),
    ("mg-T-trailing", b"mg <k> T5x\r\n", BAD_TOKEN),
    ("mg-N-abc", b"mg <k> Nabc\r\n", BAD_TOKEN),
    ("mg-N-empty", b"mg <k> N\r\n", BAD_TOKEN),
    ("mg-R-abc", b"mg <k> Rabc\r\n", BAD_TOKEN),
    ("mg-C-abc", b"mg <k> Cabc\r\n", BAD_TOKEN),
    ("mg-C-negative", b"mg <k> C-1\r\n", BAD_TOKEN),
    ("mg-C-2**64", b"mg <k> C18446744073709551616\r\n", BAD_TOKEN),
    ("mg-F-abc", b"mg <k> Fabc\r\n", BAD_FORMAT),  # F sets no message of its own
    ("mg-F-negative", b"mg <k> F-1\r\n", BAD_FORMAT),
    ("mg-D-bad", b"mg <k> Dx\r\n", b"CLIENT_ERROR invalid numeric delta value\r\n"),
    ("mg-J-bad", b"mg <k> Jx\r\n", b"CLIENT_ERROR invalid numeric initial value\r\n"),
    ("mg-M-empty", b"mg <k> M\r\n", M_LENGTH),
    ("mg-M-long", b"mg <k> MXX\r\n", M_LENGTH),
    # numeric errors don't stop the scan; the last message set wins (F sets none)
    ("mg-T-then-F", b"mg <k> Tabc Fabc\r\n", BAD_TOKEN),
    ("mg-F-then-T", b"mg <k> Fabc Tabc\r\n", BAD_TOKEN),
    ("mg-D-then-J", b"mg <k> Dx Jx\r\n", b"CLIENT_ERROR invalid numeric initial value\r\n"),
    ("mg-J-then-D", b"mg <k> Jx Dx\r\n", b"CLIENT_ERROR invalid numeric delta value\r\n"),
    ("mg-M-then-T", b"mg <k> MXX Tabc\r\n", BAD_TOKEN),
    ("mg-T-then-M", b"mg <k> Tabc MXX\r\n", M_LENGTH),
    # ...but a duplicate or unknown flag stops it at once
    ("mg-T-then-dup", b"mg <k> Tx v v\r\n", DUP),
    ("mg-T-then-invalid", b"mg <k> Tx y\r\n", INVALID),
    ("mg-T-then-opaque", b"mg <k> Tx " + O33 + b"\r\n", BAD_TOKEN),
    ("mg-T-bad-q", b"mg <k> Tx q\r\n", BAD_TOKEN),  # q never hides errors
    ("mg-opaque", b"mg <k> " + O33 + b"\r\n", OPAQUE),
    ("mg-opaque-q", b"mg <k> " + O33 + b" q\r\n", OPAQUE),
    ("mg-opaque-late", b"mg <k> k v " + O33 + b"\r\n", OPAQUE),
    ("mg-b-junk", b"mg !!! b\r\n", DECODE),
    ("mg-b-short", b"mg abc b\r\n", DECODE),
    ("mg-b-3-pad", b"mg A=== b\r\n", DECODE),
    ("mg-b-4-pad-q", b"mg ==== b q\r\n", DECODE),
    # ms: line errors don't swallow the block ("hi" then reads as a command)
    ("ms-alone", b"ms\r\n", ERR),
    ("ms-no-length", b"ms <k>\r\n", BAD_FORMAT),
    ("ms-key-251", b"ms " + K251 + b" 2\r\nhi\r\n", BAD_FORMAT + ERR),
    ("ms-length-abc", b"ms <k> abc\r\nhi\r\n", BAD_FORMAT + ERR),
    ("ms-length-negative", b"ms <k> -1\r\nhi\r\n", BAD_FORMAT + ERR),
    ("ms-length-int-max", b"ms <k> 2147483646\r\nhi\r\n", BAD_FORMAT + ERR),
    (
        "ms-20-tokens",
        b"ms <k> 2 " + b" ".join([b"v"] * 17) + b"\r\nhi\r\n",
        b"CLIENT_ERROR options flags too long\r\n" + ERR,
    ),
    # ms: flag errors swallow the block
    ("ms-dup", b"ms <k> 2 v v\r\nhi\r\n", DUP),
    ("ms-flag-0x7f", b"ms <k> 2 \x7f\r\nhi\r\n", DUP),
    ("ms-invalid", b"ms <k> 2 y\r\nhi\r\n", INVALID),
    ("ms-T-bad", b"ms <k> 2 Tx\r\nhi\r\n", BAD_TOKEN),
    ("ms-T-bad-q", b"ms <k> 2 q Tx\r\nhi\r\n", BAD_TOKEN),
    ("ms-swallows-exactly", b"ms <k> 2 Tx\r\nhimn\r\n", BAD_TOKEN + ERR),  # "himn", then ""
    ("ms-C-bad", b"ms <k> 2 Cx\r\nhi\r\n", BAD_TOKEN),
    ("ms-F-bad", b"ms <k> 2 Fx\r\nhi\r\n", BAD_FORMAT),
    ("ms-N-then-F", b"ms <k> 2 Nx Fx\r\nhi\r\n", BAD_TOKEN),
    ("ms-mode-bad", b"ms <k> 2 MX\r\nhi\r\n", MS_MODE),
    ("ms-mode-of-ma", b"ms <k> 2 MI\r\nhi\r\n", MS_MODE),
    ("ms-mode-long", b"ms <k> 2 Mset\r\nhi\r\n", M_LENGTH),
    ("ms-mode-bad-q", b"ms <k> 2 q MX\r\nhi\r\n", MS_MODE),
    ("ms-opaque", b"ms <k> 2 " + O33 + b"\r\nhi\r\n", OPAQUE),
    ("ms-opaque-then-mode", b"ms <k> 2 " + O33 + b" MX\r\nhi\r\n", MS_MODE),
    ("ms-mode-then-opaque", b"ms <k> 2 MX " + O33 + b"\r\nhi\r\n", MS_MODE),
    ("ms-b-junk", b"ms !!! 2 b\r\nhi\r\n", DECODE),
    # ms: too large values are swallowed, whatever q says; limit is
    # 56 + len(key) + 1 + datalen + 2 (+ 4 with flags) <= 1 MiB
    ("ms-too-large", b"ms <k> %d\r\n" % BIG + b"x" * (BIG + 2), TOO_LARGE),
    ("ms-too-large-q", b"ms <k> %d q\r\n" % BIG + b"x" * (BIG + 2), TOO_LARGE),
    ("ms-too-large-opaque", b"ms <k> %d " % BIG + O33 + b"\r\n" + b"x" * (BIG + 2), OPAQUE),
    ("ms-limit-over", b"ms bnd1 1048514\r\n" + b"x" * 1048516, TOO_LARGE),
    ("ms-limit-fits", b"ms bnd2 1048513\r\n" + b"x" * 1048513 + b"XX", BAD_CHUNK),
    ("ms-limit-F-over", b"ms bnd3 1048510 F1\r\n" + b"x" * 1048512, TOO_LARGE),
    ("ms-limit-F-fits", b"ms bnd4 1048509 F1\r\n" + b"x" * 1048509 + b"XX", BAD_CHUNK),
    # with b the decoded key counts: "YmluYXJ5" is "binary", 6 bytes
    ("ms-limit-b-fits", b"ms YmluYXJ5 1048511 b\r\n" + b"x" * 1048511 + b"XX", BAD_CHUNK),
    ("ms-limit-b-over", b"ms YmluYXJ5 1048512 b\r\n" + b"x" * 1048514, TOO_LARGE),
    # ms: a block not ending in \r\n
    ("ms-bad-chunk", b"ms <k> 2\r\nhiXX", BAD_CHUNK),
    ("ms-bad-chunk-q", b"ms <k> 2 q\r\nhiXX", BAD_CHUNK),
    ("ms-bad-chunk-empty", b"ms <k> 0 q\r\nXX", BAD_CHUNK),
    # md
    ("md-alone", b"md\r\n", ERR),
    ("md-key-251", b"md " + K251 + b"\r\n", BAD_FORMAT),
    (
        "md-20-tokens",
        b"md <k> " + b" ".join([b"q"] * 18) + b"\r\n",
        b"CLIENT_ERROR options flags too long\r\n",
    ),
    ("md-dup", b"md <k> q q\r\n", INV_OR_DUP),
    ("md-invalid", b"md <k> y\r\n", INV_OR_DUP),
    ("md-T-bad", b"md <k> Tx\r\n", INV_OR_DUP),
    ("md-C-bad", b"md <k> Cx\r\n", INV_OR_DUP),
    ("md-M-long", b"md <k> MXX\r\n", INV_OR_DUP),
    ("md-D-bad", b"md <k> Dx\r\n", INV_OR_DUP),
    ("md-b-junk", b"md !!! b\r\n", INV_OR_DUP),
    ("md-opaque", b"md <k> " + O33 + b"\r\n", OPAQUE),
    ("md-opaque-q", b"md <k> q " + O33 + b"\r\n", OPAQUE),
    # ma
    ("ma-alone", b"ma\r\n", ERR),
    ("ma-key-251", b"ma " + K251 + b"\r\n", BAD_FORMAT),
    ("ma-20-tokens", b"ma <k> " + V18 + b"\r\n", b"CLIENT_ERROR options flags too long\r\n"),
    ("ma-dup", b"ma <k> v v\r\n", INV_OR_DUP),
    ("ma-invalid", b"ma <k> y\r\n", INV_OR_DUP),
    ("ma-D-bad", b"ma <k> Dx\r\n", INV_OR_DUP),
    ("ma-D-negative", b"ma <k> D-1\r\n", INV_OR_DUP),
    ("ma-J-bad", b"ma <k> Jx\r\n", INV_OR_DUP),
    ("ma-N-bad", b"ma <k> Nx\r\n", INV_OR_DUP),
    ("ma-M-long", b"ma <k> MII\r\n", INV_OR_DUP),
    ("ma-mode-bad", b"ma <k> MX\r\n", MA_MODE),
    ("ma-mode-of-ms", b"ma <k> ME\r\n", MA_MODE),
    ("ma-mode-bad-q", b"ma <k> q MX\r\n", MA_MODE),
    ("ma-mode-then-opaque", b"ma <k> MX " + O33 + b"\r\n", MA_MODE),
    ("ma-opaque", b"ma <k> " + O33 + b"\r\n", OPAQUE),
    ("ma-opaque-q", b"ma <k> q " + O33 + b"\r\n", OPAQUE),
    ("ma-b-junk", b"ma !!! b\r\n", INV_OR_DUP),
    # me
    ("me-alone", b"me\r\n", BAD_FORMAT),
    ("me-key-251", b"me " + K251 + b"\r\n", BAD_FORMAT),
    ("me-b-short", b"me k b\r\n", BAD_FORMAT),
    ("me-b-junk", b"me !!! b\r\n", BAD_FORMAT),
    # mn
    ("mn-args", b"mn anything at all\r\n", MN),
]


def _row_input(i: int, data: bytes) -> bytes:
    return data.replace(b"<k>", b"meta-err-%d" % i) + b"mn\r\n"


def _error_params():
    return [
        pytest.param(_row_input(i, data), reply + MN, id=name)
        for i, (name, data, reply) in enumerate(ERRORS)
    ]


def _as_reply(events: list) -> bytes:
    """Error lines and MN for the events of an error row (no other events expected).

    A TooLarge event (an ms refused for its size) stands for its error line.
    """
    out = []
    for ev in events:
        if isinstance(ev, bytes):
            out.append(ev)
        elif isinstance(ev, TooLarge):
            assert ev.verb == "ms" and not ev.noreply
            out.append(error_line(ev.error))
        elif isinstance(ev, MetaNoop):
            out.append(MN)
        else:
            raise AssertionError(f"unexpected event {ev!r}")
    return b"".join(out)


@pytest.mark.parametrize(("data", "reply"), _error_params())
def test_errors(data, reply):
    """The parser reports exactly memcached 1.6.18's error lines."""
    if len(data) <= 65536:
        assert _as_reply(check(data)) == reply
        return
    whole = run(data)
    assert run(data, 1460) == whole
    assert _as_reply(run(data + TRAILER, 65536)) == reply + MN
    assert _as_reply(whole) == reply


def test_errors_are_never_quiet():
    """Meta errors carry noreply=False, even with q."""
    for data in (b"mg k q Tx\r\n", b"ms k 2 q Tx\r\nhi\r\n", b"md k q y\r\n", b"ma k q MX\r\n"):
        (line,) = check(data)
        assert line.startswith(b"CLIENT_ERROR"), line


# -- the live oracle -------------------------------------------------------------

_FENCE = b"mg meta-fence Ofence\r\n"
_FENCE_REPLY = b"EN Ofence\r\n"


def _ask(server, data: bytes, limit: float = 10.0) -> bytes:
    """Send `data` to memcached on a new connection; its reply, up to a fence miss."""
    deadline = time.monotonic() + limit
    out = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=limit) as s:
        s.sendall(data + _FENCE)
        while not out.endswith(_FENCE_REPLY):
            assert time.monotonic() < deadline, f"no fence after {bytes(out[:200])!r}"
            chunk = s.recv(65536)
            assert chunk, f"memcached closed the connection after {bytes(out[:200])!r}"
            out += chunk
    return bytes(out[: -len(_FENCE_REPLY)])


@pytest.mark.parametrize(("data", "reply"), _error_params())
def test_errors_match_memcached(memcached, data, reply):
    """memcached 1.6.18 still answers every row of ERRORS with its bytes."""
    assert _ask(memcached, data) == reply


@pytest.mark.parametrize(("cmd", "tok", "fields"), _flag_params(FLAGS) + _mode_params())
def test_flags_accepted_by_memcached(memcached, cmd, tok, fields):
    """Every flag the parser accepts (but E, x, S), memcached accepts too."""
    key = b"meta-flag-%d" % next(_SEQ)
    reply = _ask(memcached, _line(cmd, key, [tok]))
    assert not reply.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")), reply


# -- reply composers, byte for byte against memcached ---------------------------


def _key(tag: str) -> bytes:
    """A key no other test uses."""
    return b"meta-%s-%d" % (tag.encode(), next(_SEQ))


def _num(flag: bytes, reply: bytes) -> int:
    """The number a return flag carries in a reply line (" c123" -> 123)."""
    m = re.search(rb" " + flag + rb"(-?\d+)", reply.split(b"\r\n", 1)[0])
    assert m, (flag, reply)
    return int(m.group(1))


def _store(server, key: bytes, value: bytes, flags: bytes = b"T0") -> None:
    assert _ask(server, b"ms %s %d %s\r\n%s\r\n" % (key, len(value), flags, value)) == b"HD\r\n"


def test_mg_hit(memcached):
    """mg hit with s v t f c k O q: VA line, flags in request order, value."""
    key = _key("mg-hit")
    _store(memcached, key, b"abc", b"F5 T0")
    line = b"mg %s s v t f c k Oop-1 q\r\n" % key
    reply = _ask(memcached, line)
    item = ItemInfo(key, 3, client_flags=5, cas=_num(b"c", reply), ttl=-1)
    assert compose_mg_hit(_req(line), item) + b"abc\r\n" == reply


def test_mg_hit_without_value(memcached):
    """mg hit without v: HD; a ttl in seconds; flags 0 print as f0."""
    key = _key("mg-hd")
    _store(memcached, key, b"abc", b"T100")
    line = b"mg %s Oa t f k c s\r\n" % key
    reply = _ask(memcached, line)
    ttl = _num(b"t", reply)
    assert 98 <= ttl <= 100
    item = ItemInfo(key, 3, cas=_num(b"c", reply), ttl=ttl)
    assert compose_mg_hit(_req(line), item) == reply


def test_mg_hit_and_last_access(memcached):
    """h and l report the state before this request."""
    key = _key("mg-hl")
    _store(memcached, key, b"v")
    line = b"mg %s h l v\r\n" % key
    reply = _ask(memcached, line)
    item = ItemInfo(key, 1, last_access=_num(b"l", reply), fetched=False)
    assert compose_mg_hit(_req(line), item) + b"v\r\n" == reply
    line = b"mg %s h\r\n" % key
    assert compose_mg_hit(_req(line), ItemInfo(key, 1, fetched=True)) == _ask(memcached, line)


def test_mg_miss(memcached):
    """mg miss echoes k and O in request order."""
    key = _key("mg-miss")
    for line in (b"mg %s k Oop v\r\n" % key, b"mg %s Oop s c k t\r\n" % key):
        assert compose_miss(_req(line)) == _ask(memcached, line)


def test_mg_miss_quiet(memcached):
    """mg miss with q: nothing at all."""
    line = b"mg %s q k Oop v\r\n" % _key("mg-miss-q")
    assert compose_miss(_req(line)) == b"" == _ask(memcached, line)


def test_mg_binary_key(memcached):
    """An item stored with b returns its key base64 with a b flag, however fetched."""
    raw = b"\x00bin\xff\r\nkey %d" % next(_SEQ)
    wire = base64.b64encode(raw)
    assert _ask(memcached, b"ms %s 2 b T0\r\nhi\r\n" % wire) == b"HD\r\n"
    line = b"mg %s b k v s c\r\n" % wire
    reply = _ask(memcached, line)
    assert reply.startswith(b"VA 2 k%s b s2 c" % wire)
    item = ItemInfo(raw, 2, cas=_num(b"c", reply), binary=True)
    assert compose_mg_hit(_req(line), item) + b"hi\r\n" == reply


def test_mg_key_binary_follows_the_item(memcached):
    """k prints base64 iff the item was stored with b, not if this mg used b."""
    key = b"key-bin-%d" % next(_SEQ)
    wire = base64.b64encode(key)
    assert _ask(memcached, b"ms %s 1 b\r\nx\r\n" % wire) == b"HD\r\n"
    line = b"mg %s k\r\n" % key  # plain fetch of a binary item
    assert compose_mg_hit(_req(line), ItemInfo(key, 1, binary=True)) == _ask(memcached, line)
    plain = _key("plain")
    _store(memcached, plain, b"x")
    line = b"mg %s b k\r\n" % base64.b64encode(plain)  # base64 fetch of a plain item
    assert compose_mg_hit(_req(line), ItemInfo(plain, 1)) == _ask(memcached, line)


def test_mg_binary_miss(memcached):
    """A miss with b returns the request's key, re-encoded from its decoded bytes."""
    wire = base64.b64encode(_key("bin-miss"))
    for line in (b"mg %s b k Oz\r\n" % wire, b"mg ab!cd b k\r\n", b"mg YQ==YWJj b k\r\n"):
        assert compose_miss(_req(line)) == _ask(memcached, line)


def test_mg_vivify_win_and_token_sent(memcached):
    """N on a miss creates an empty item and wins (W); later fetches see Z."""
    key = _key("mg-viv")
    line = b"mg %s N30 s c v t\r\n" % key
    reply = _ask(memcached, line)
    item = ItemInfo(key, 0, cas=_num(b"c", reply), ttl=_num(b"t", reply))
    assert compose_mg_hit(_req(line), item, won=True) + b"\r\n" == reply
    line = b"mg %s k\r\n" % key
    assert compose_mg_hit(_req(line), item, token_sent=True) == _ask(memcached, line)


def test_mg_recache_win(memcached):
    """R above the remaining ttl wins once; then Z."""
    key = _key("mg-recache")
    _store(memcached, key, b"hi", b"T10")
    line = b"mg %s R30 t\r\n" % key
    reply = _ask(memcached, line)
    item = ItemInfo(key, 2, ttl=_num(b"t", reply))
    assert compose_mg_hit(_req(line), item, won=True) == reply
    line = b"mg %s R30\r\n" % key
    assert compose_mg_hit(_req(line), item, token_sent=True) == _ask(memcached, line)


def test_mg_stale_after_md_invalidate(memcached):
    """md I marks stale (HD, hidden by q); mg then sees X W, later Z X."""
    key = _key("stale")
    _store(memcached, key, b"hi")
    line = b"md %s I T30 q\r\n" % key
    assert compose_md(_req(line), b"HD") == b"" == _ask(memcached, line)
    line = b"mg %s c t\r\n" % key
    reply = _ask(memcached, line)
    item = ItemInfo(key, 2, cas=_num(b"c", reply), ttl=_num(b"t", reply))
    assert compose_mg_hit(_req(line), item, stale=True, won=True) == reply
    line = b"mg %s c\r\n" % key
    reply = _ask(memcached, line)
    assert compose_mg_hit(_req(line), item, stale=True, token_sent=True) == reply


def test_ms_stored(memcached):
    """ms HD with c k O (in request order); mg's return flags are ignored."""
    key = _key("ms-hd")
    line = b"ms %s 2 c s t f h l v k Oop T0\r\nhi\r\n" % key
    reply = _ask(memcached, line)
    cas = _num(b"c", reply)
    assert compose_ms(_req(line), b"HD", cas) == reply
    assert _num(b"c", _ask(memcached, b"mg %s c\r\n" % key)) == cas


def test_ms_binary_key(memcached):
    """ms with b and k: the key comes back base64, then b."""
    wire = base64.b64encode(b"\xfe\xff%d" % next(_SEQ))
    line = b"ms %s 2 b Oo k c\r\nhi\r\n" % wire
    reply = _ask(memcached, line)
    assert compose_ms(_req(line), b"HD", _num(b"c", reply)) == reply


def test_ms_quiet(memcached):
    """ms q: a successful store answers nothing."""
    key = _key("ms-q")
    line = b"ms %s 2 q k c\r\nhi\r\n" % key
    assert compose_ms(_req(line), b"HD", 5) == b"" == _ask(memcached, line)
    assert _ask(memcached, b"mg %s v\r\n" % key) == b"VA 2\r\nhi\r\n"


def test_ms_not_stored(memcached):
    """ms ME (add) on an existing item: NS, with c0; q does not hide it."""
    key = _key("ms-ns")
    _store(memcached, key, b"hi")
    for line in (b"ms %s 2 ME c k Oop\r\nhi\r\n" % key, b"ms %s 2 q ME\r\nhi\r\n" % key):
        assert compose_ms(_req(line), b"NS", 0) == _ask(memcached, line)
    missing = _key("ms-ns-missing")
    for mode in (b"MR", b"MA", b"MP"):
        line = b"ms %s 2 %s c\r\nhi\r\n" % (missing, mode)
        assert compose_ms(_req(line), b"NS", 0) == _ask(memcached, line)


def test_ms_exists_and_not_found(memcached):
    """ms with a wrong C: EX; with C on a missing key: NF; both with c0."""
    key = _key("ms-ex")
    _store(memcached, key, b"hi")
    cas = _num(b"c", _ask(memcached, b"mg %s c\r\n" % key))
    line = b"ms %s 2 C%d c k Oop q\r\nhi\r\n" % (key, cas + 1000)
    assert compose_ms(_req(line), b"EX", 0) == _ask(memcached, line)
    line = b"ms %s 2 C%d k c\r\nhi\r\n" % (_key("ms-nf"), cas)
    assert compose_ms(_req(line), b"NF", 0) == _ask(memcached, line)
    line = b"ms %s 2 C%d c\r\nhi\r\n" % (key, cas)  # the right cas stores
    reply = _ask(memcached, line)
    assert compose_ms(_req(line), b"HD", _num(b"c", reply)) == reply


def test_ms_append_prepend_cas(memcached):
    """MA / MP store and return the item's new cas."""
    key = _key("ms-ap")
    _store(memcached, key, b"hi")
    for mode in (b"MA", b"MP"):
        line = b"ms %s 2 %s c\r\nyo\r\n" % (key, mode)
        reply = _ask(memcached, line)
        assert compose_ms(_req(line), b"HD", _num(b"c", reply)) == reply
    assert _ask(memcached, b"mg %s v\r\n" % key) == b"VA 6\r\nyohiyo\r\n"


def test_md(memcached):
    """md: HD, then NF; EX on a wrong C; k and O echoed; q hides only HD."""
    key = _key("md")
    _store(memcached, key, b"hi")
    cas = _num(b"c", _ask(memcached, b"mg %s c\r\n" % key))
    line = b"md %s C%d k Oop\r\n" % (key, cas + 1000)
    assert compose_miss(_req(line), b"EX") == compose_md(_req(line), b"EX")
    assert compose_md(_req(line), b"EX") == _ask(memcached, line)
    line = b"md %s k Oop s t c f v\r\n" % key  # only k and O come back
    assert compose_md(_req(line), b"HD") == _ask(memcached, line)
    assert compose_md(_req(line), b"NF") == _ask(memcached, line)
    line = b"md %s q Oop k\r\n" % key
    assert compose_md(_req(line), b"NF") == _ask(memcached, line)
    _store(memcached, key, b"hi")
    assert compose_md(_req(line), b"HD") == b"" == _ask(memcached, line)


def test_md_binary_key(memcached):
    """md with b and k: the key comes back base64, then b."""
    wire = base64.b64encode(b"\x01md%d" % next(_SEQ))
    assert _ask(memcached, b"ms %s 1 b\r\nx\r\n" % wire) == b"HD\r\n"
    line = b"md %s b k\r\n" % wire
    assert compose_md(_req(line), b"HD") == _ask(memcached, line)


def test_ma(memcached):
    """ma: VA with v c t k O, HD with c, hidden by q; decrement stops at 0."""
    key = _key("ma")
    _store(memcached, key, b"10")
    line = b"ma %s v c t k Oop D5 s f h l\r\n" % key  # s f h l are ignored
    reply = _ask(memcached, line)
    assert compose_ma(_req(line), 15, _num(b"c", reply), -1) == reply
    line = b"ma %s c\r\n" % key
    reply = _ask(memcached, line)
    assert compose_ma(_req(line), 16, _num(b"c", reply)) == reply
    line = b"ma %s q v\r\n" % key
    assert compose_ma(_req(line), 17) == b"" == _ask(memcached, line)
    line = b"ma %s MD D100 v\r\n" % key
    assert compose_ma(_req(line), 0) == _ask(memcached, line)
    line = b"ma %s M+ D%d v\r\n" % (key, 2**64 - 1)
    assert compose_ma(_req(line), 2**64 - 1) == _ask(memcached, line)
    line = b"ma %s v\r\n" % key  # incrementing wraps around
    assert compose_ma(_req(line), 0) == _ask(memcached, line)


def test_ma_ttl(memcached):
    """ma t reports the remaining ttl."""
    key = _key("ma-ttl")
    _store(memcached, key, b"1", b"T100")
    line = b"ma %s t k\r\n" % key
    reply = _ask(memcached, line)
    assert 98 <= _num(b"t", reply) <= 100
    assert compose_ma(_req(line), 2, ttl=_num(b"t", reply)) == reply


def test_ma_failures(memcached):
    """ma NF and EX echo k and O; q does not hide them."""
    key = _key("ma-fail")
    for line in (b"ma %s k Oop\r\n" % key, b"ma %s q Oop k\r\n" % key):
        assert compose_miss(_req(line), b"NF") == _ask(memcached, line)
    _store(memcached, key, b"1")
    cas = _num(b"c", _ask(memcached, b"mg %s c\r\n" % key))
    line = b"ma %s C%d k q Oop\r\n" % (key, cas + 1000)
    assert compose_miss(_req(line), b"EX") == _ask(memcached, line)


def test_ma_vivify(memcached):
    """ma N on a miss creates J; q does not hide that reply (1.6.18)."""
    line = b"ma %s N0 J7 v q t\r\n" % _key("ma-viv")
    assert compose_ma(_req(line), 7, ttl=-1, created=True) == _ask(memcached, line)
    line = b"ma %s N100 t v\r\n" % _key("ma-viv")
    reply = _ask(memcached, line)
    assert compose_ma(_req(line), 0, ttl=_num(b"t", reply), created=True) == reply


def test_ma_binary_key(memcached):
    """ma with b and k: the key comes back base64, then b."""
    line = b"ma %s b N0 k v\r\n" % base64.b64encode(b"\x02ma%d" % next(_SEQ))
    assert compose_ma(_req(line), 0, created=True) == _ask(memcached, line)


_ME = re.compile(
    rb"ME (\S+) exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)\r\n\Z"
)


def _me_facts(reply: bytes) -> dict:
    m = _ME.match(reply)
    assert m, reply
    exp, la, cas, fetch, cls, size = m.groups()[1:]
    return dict(
        exp=int(exp),
        la=int(la),
        cas=int(cas),
        fetched=fetch == b"yes",
        cls=int(cls),
        size=int(size),
    )


def test_me_reply(memcached):
    """me: same format (cls and size values are memcached's own, passed through)."""
    key = _key("me")
    _store(memcached, key, b"abc")
    line = b"me %s\r\n" % key
    reply = _ask(memcached, line)
    facts = _me_facts(reply)
    assert (facts["exp"], facts["fetched"]) == (-1, False)
    assert compose_me(key, False, **facts) == reply
    _ask(memcached, b"mg %s v\r\n" % key)
    reply = _ask(memcached, line)
    assert _me_facts(reply)["fetched"]
    assert compose_me(key, False, **_me_facts(reply)) == reply


def test_me_exp_counts_up_to_expiry(memcached):
    """memcached prints exp = now - exptime: minus the seconds left (a quirk)."""
    key = _key("me-exp")
    _store(memcached, key, b"x", b"T100")
    reply = _ask(memcached, b"me %s\r\n" % key)
    facts = _me_facts(reply)
    assert -100 <= facts["exp"] <= -98
    assert compose_me(key, False, **facts) == reply


def test_me_binary(memcached):
    """me of an item stored with b prints its key base64, even without b."""
    raw = b"\x00me%d" % next(_SEQ)
    wire = base64.b64encode(raw)
    assert _ask(memcached, b"ms %s 1 b\r\nx\r\n" % wire) == b"HD\r\n"
    reply = _ask(memcached, b"me %s b\r\n" % wire)
    assert reply.startswith(b"ME " + wire + b" ")
    assert compose_me(raw, True, **_me_facts(reply)) == reply
    key = b"me-bin-%d" % next(_SEQ)
    assert _ask(memcached, b"ms %s 1 b\r\nx\r\n" % base64.b64encode(key)) == b"HD\r\n"
    reply = _ask(memcached, b"me %s\r\n" % key)
    assert compose_me(key, True, **_me_facts(reply)) == reply


def test_me_miss(memcached):
    """me on a miss is a bare EN (no composer needed)."""
    assert _ask(memcached, b"me %s\r\n" % _key("me-miss")) == b"EN\r\n"


def test_mn_reply(memcached):
    """mn answers MN, whatever follows it."""
    assert _ask(memcached, b"mn\r\nmn x y\r\n") == MN + MN
