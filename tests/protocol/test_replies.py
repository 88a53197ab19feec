"""Tests for protocol/memcache/replies.py and protocol/errors.py's error_line().

Spec: memcached's doc/protocol.txt reply formats: a retrieval hit is
"VALUE <key> <flags> <bytes> [<cas unique>]\\r\\n<data block>\\r\\n", the
list ends "END\\r\\n"; storage answers STORED, NOT_STORED, EXISTS or
NOT_FOUND; delete DELETED / NOT_FOUND; touch TOUCHED / NOT_FOUND; incr and
decr "<value>\\r\\n"; "VERSION <version>\\r\\n"; statistics are
"STAT <name> <value>\\r\\n" lines and END; "Error strings" are "ERROR\\r\\n",
"CLIENT_ERROR <error>\\r\\n" and "SERVER_ERROR <error>\\r\\n". Where the
document says less (cache_memlimit, shutdown, noreply), memcached 1.6.18.

The oracle: for each scenario we build, from replies.py's constants and
composers and error_line(), the whole reply a server on our protocol layer
sends for a byte stream, and compare it with what live memcached 1.6.18
answers to the same stream. cas uniques are the server's own: we take
memcached's from its reply and hand them to value_header().
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import pytest
from cases import ask
from oracle import private_memcached

from protocol import ClientError, CommandError, ProtocolError, ServerError, error_line
from protocol.memcache import (
    CRLF,
    DELETED,
    END,
    EXISTS,
    MEMLIMIT_TOO_LARGE,
    MEMLIMIT_TOO_SMALL,
    MN,
    NOT_FOUND,
    NOT_STORED,
    OK,
    RESET,
    SHUTDOWN_DISABLED,
    STORED,
    TOUCHED,
    compose_number,
    compose_stats,
    compose_version,
    value_header,
)
from protocol.memcache.text import BAD_FORMAT, DELETE_USAGE

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
K250 = b"rp-" + b"k" * 247


def _hit(key: bytes, flags: int, value: bytes, cas: int | None = None) -> bytes:
    """One retrieval hit as a server writes it: header, value, \\r\\n."""
    return value_header(key, flags, len(value), cas) + value + CRLF


def _error(exc: ProtocolError) -> bytes:
    return error_line(exc)


_CAS = re.compile(rb"^VALUE \S+ \d+ \d+ (\d+)\r$", re.MULTILINE)


def _cas_uniques(reply: bytes) -> list[int]:
    """The cas uniques of the VALUE lines in `reply`, in order."""
    return [int(m) for m in _CAS.findall(reply)]


class Scenario(NamedTuple):
    """A byte stream and the reply we compose for it, given memcached's cas uniques."""

    id: str
    data: bytes
    compose: Callable[[list[int]], bytes]


S = Scenario

SCENARIOS = [
    # -- retrieval: value_header, END ----------------------------------------
    S("get-miss", b"get rp-g0\r\n", lambda cas: END),
    S(
        "get-hit",
        b"set rp-g1 5 0 3\r\nabc\r\nget rp-g1\r\n",
        lambda cas: STORED + _hit(b"rp-g1", 5, b"abc") + END,
    ),
    S(
        "gets-hit",
        b"set rp-g2 5 0 3\r\nabc\r\ngets rp-g2\r\n",
        lambda cas: STORED + _hit(b"rp-g2", 5, b"abc", cas[0]) + END,
    ),
    S(
        "gets-several",
        b"set rp-g3 1 0 1\r\na\r\nset rp-g4 2 0 2\r\nbb\r\ngets rp-g3 rp-gx rp-g4 rp-g3\r\n",
        lambda cas: (
            STORED
            + STORED
            + _hit(b"rp-g3", 1, b"a", cas[0])
            + _hit(b"rp-g4", 2, b"bb", cas[1])
            + _hit(b"rp-g3", 1, b"a", cas[2])
            + END
        ),
    ),
    S(
        "gat-hit",
        b"set rp-g5 3 0 2\r\nhi\r\ngat 100 rp-g5 rp-gx\r\n",
        lambda cas: STORED + _hit(b"rp-g5", 3, b"hi") + END,
    ),
    S(
        "gats-hit",
        b"set rp-g6 3 0 2\r\nhi\r\ngats 0 rp-g6\r\n",
        lambda cas: STORED + _hit(b"rp-g6", 3, b"hi", cas[0]) + END,
    ),
    S(
        "flags-max",
        b"set rp-g7 4294967295 0 1\r\na\r\nget rp-g7\r\n",
        lambda cas: STORED + _hit(b"rp-g7", U32, b"a") + END,
    ),
    S(
        "empty-value",
        b"set rp-g8 0 0 0\r\n\r\nget rp-g8\r\n",
        lambda cas: STORED + _hit(b"rp-g8", 0, b"") + END,
    ),
    S(
        "binary-value",
        b"set rp-g9 0 0 7\r\n\x00\r\n\xff \nV\r\nget rp-g9\r\n",
        lambda cas: STORED + _hit(b"rp-g9", 0, b"\x00\r\n\xff \nV") + END,
    ),
    S(
        "key-250",
        b"set " + K250 + b" 0 0 1\r\na\r\nget " + K250 + b"\r\n",
        lambda cas: STORED + _hit(K250, 0, b"a") + END,
    ),
    # -- storage, delete, touch -------------------------------------------------
    S(
        "storage-replies",
        b"add rp-s1 0 0 1\r\na\r\nadd rp-s1 0 0 1\r\nb\r\nreplace rp-s2 0 0 1\r\na\r\n"
        b"append rp-s2 0 0 1\r\na\r\nprepend rp-s2 0 0 1\r\na\r\ncas rp-s2 0 0 1 1\r\na\r\n"
        b"cas rp-s1 0 0 1 0\r\na\r\n",
        lambda cas: STORED + NOT_STORED + NOT_STORED + NOT_STORED + NOT_STORED + NOT_FOUND + EXISTS,
    ),
    S(
        "delete",
        b"set rp-d1 0 0 1\r\na\r\ndelete rp-d1\r\ndelete rp-d1\r\n",
        lambda cas: STORED + DELETED + NOT_FOUND,
    ),
    S(
        "touch",
        b"set rp-t1 0 0 1\r\na\r\ntouch rp-t1 100\r\ntouch rp-t2 100\r\n",
        lambda cas: STORED + TOUCHED + NOT_FOUND,
    ),
    S(
        "noreply-writes-nothing",
        b"set rp-n1 0 0 1 noreply\r\na\r\ndelete rp-n1 noreply\r\ntouch rp-n1 1 noreply\r\n",
        lambda cas: b"",
    ),
    # -- incr / decr: compose_number ---------------------------------------------
    S(
        "incr-decr",
        b"set rp-i1 0 0 2\r\n10\r\nincr rp-i1 5\r\ndecr rp-i1 100\r\n"
        b"incr rp-i1 18446744073709551615\r\nincr rp-i1 1\r\nincr rp-i2 1\r\n",
        lambda cas: (
            STORED
            + compose_number(15)
            + compose_number(0)
            + compose_number(U64)
            + compose_number(0)  # wraps around 2**64
            + NOT_FOUND
        ),
    ),
    # -- other commands ------------------------------------------------------------
    S("version", b"version\r\n", lambda cas: compose_version("1.6.18")),
    S("mn", b"mn\r\n", lambda cas: MN),
    S("shutdown-disabled", b"shutdown\r\n", lambda cas: SHUTDOWN_DISABLED),
    # -- error lines: error_line() -------------------------------------------------
    S("unknown-command", b"foo\r\n", lambda cas: _error(CommandError())),
    S("bad-format", b"get " + K250 + b"k\r\n", lambda cas: _error(ClientError(BAD_FORMAT))),
    S("delete-usage", b"delete rp-e1 1\r\n", lambda cas: _error(ClientError(DELETE_USAGE))),
    S(
        "bad-data-chunk",
        b"set rp-e2 0 0 1\r\nab\r\n",
        lambda cas: _error(ClientError("bad data chunk")) + _error(CommandError()),
    ),
    S(
        "bad-delta",
        b"incr rp-e3 x\r\n",
        lambda cas: _error(ClientError("invalid numeric delta argument")),
    ),
    S(
        "bad-exptime",
        b"touch rp-e3 x\r\n",
        lambda cas: _error(ClientError("invalid exptime argument")),
    ),
    S(
        "too-large",
        b"set rp-e4 0 0 2000000\r\n" + b"v" * 2000000 + b"\r\n",
        lambda cas: _error(ServerError("object too large for cache")),
    ),
    S(
        "non-numeric",
        b"set rp-e5 0 0 1\r\nx\r\nincr rp-e5 1\r\n",
        lambda cas: STORED + _error(ClientError("cannot increment or decrement non-numeric value")),
    ),
    S("stats-unknown", b"stats bogus\r\n", lambda cas: _error(CommandError())),
    S(
        "stats-detail-usage",
        b"stats detail\r\n",
        lambda cas: _error(ClientError("usage: stats detail on|off|dump")),
    ),
    S(
        "noreply-hides-errors",
        b"incr rp-e6 x noreply\r\nset rp-e6 x 0 1 noreply\r\na\r\n",
        lambda cas: (
            _error(ClientError("invalid numeric delta argument", noreply=True))
            + _error(ClientError(BAD_FORMAT, noreply=True))
            + _error(CommandError())
        ),  # the data line "a", not swallowed, is a command
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_composed_reply_matches_memcached(memcached, scenario: Scenario):
    reply, closed = ask(memcached, scenario.data)
    assert not closed
    assert scenario.compose(_cas_uniques(reply)) == reply


def test_scenario_ids_are_unique():
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))


def test_cas_round_trip(memcached):
    """The cas unique memcached hands out is the one a later cas must quote."""
    reply, _ = ask(memcached, b"set rp-c1 0 0 1\r\na\r\ngets rp-c1\r\n")
    (cas,) = _cas_uniques(reply)
    assert reply == STORED + _hit(b"rp-c1", 0, b"a", cas) + END
    reply, _ = ask(memcached, b"cas rp-c1 9 0 1 %d\r\nb\r\ngets rp-c1\r\n" % cas)
    (new_cas,) = _cas_uniques(reply)
    assert new_cas != cas
    assert reply == STORED + _hit(b"rp-c1", 9, b"b", new_cas) + END
    reply, _ = ask(memcached, b"cas rp-c1 0 0 1 %d\r\nc\r\n" % cas)
    assert reply == EXISTS


def test_server_wide_replies_match_memcached():
    """OK, RESET and the cache_memlimit replies (on a memcached of our own)."""
    with private_memcached() as server:
        for data, composed in [
            (b"flush_all\r\n", OK),
            (b"verbosity 0\r\n", OK),
            (b"stats reset\r\n", RESET),
            (b"stats detail off\r\n", OK),
            (b"cache_memlimit 64\r\n", OK),
            (b"cache_memlimit 7\r\n", MEMLIMIT_TOO_SMALL),
            (b"cache_memlimit 1000000001\r\n", MEMLIMIT_TOO_LARGE),
        ]:
            assert (data, ask(server, data)) == (data, (composed, False))


def test_invalid_shutdown_mode_matches_memcached():
    """With shutdown enabled (-A), a bad mode is CLIENT_ERROR invalid shutdown mode."""
    with private_memcached("-A") as server:
        reply = ask(server, b"shutdown bogus\r\nshutdown graceful now\r\n")
    line = _error(ClientError("invalid shutdown mode"))
    assert reply == (line + line, False)


# -- compose_stats -------------------------------------------------------------------


def _stat_pairs(reply: bytes) -> list[tuple[str, bytes]]:
    """memcached's STAT lines as (name, value bytes); the reply must end with END."""
    lines = reply.split(b"\r\n")
    assert lines[-2:] == [b"END", b""], reply[-100:]
    pairs = []
    for line in lines[:-2]:
        stat, name, value = line.split(b" ", 2)
        assert stat == b"STAT"
        pairs.append((name.decode("ascii"), value))
    return pairs


@pytest.mark.parametrize("args", [b"", b" settings", b" slabs", b" items", b" sizes", b" conns"])
def test_compose_stats_reproduces_memcached(memcached, args: bytes):
    """Fed memcached's own names and values, compose_stats gives its exact bytes."""
    assert ask(memcached, b"set rp-st 0 0 1\r\na\r\n") == (STORED, False)
    reply, _ = ask(memcached, b"stats" + args + b"\r\n")
    pairs = _stat_pairs(reply)
    assert pairs or args == b" items"
    assert compose_stats(pairs) == reply


def test_compose_stats_typed_values_match_memcached(memcached):
    """ints print plainly, floats as %.6f (rusage_*), bools as yes/no (settings)."""
    general = dict(_stat_pairs(ask(memcached, b"stats\r\n")[0]))
    settings = dict(_stat_pairs(ask(memcached, b"stats settings\r\n")[0]))
    typed = [
        ("pid", int(general["pid"])),
        ("pointer_size", int(general["pointer_size"])),
        ("rusage_user", float(general["rusage_user"])),
        ("rusage_system", float(general["rusage_system"])),
        ("cas_enabled", settings["cas_enabled"] == b"yes"),
        ("detail_enabled", settings["detail_enabled"] == b"yes"),
        ("maxbytes", int(settings["maxbytes"])),
        ("version", general["version"].decode()),
    ]
    raw = {**general, **settings}
    expected = b"".join(b"STAT %s %s\r\n" % (n.encode(), raw[n]) for n, _ in typed) + END
    assert compose_stats(typed) == expected


def test_compose_stats_preformatted_values():
    """memcached prints some stats its own way: pass those as str or bytes.

    growth_factor is %.2f ("1.25") and evictions is on/off; compose_stats
    would print the float 1.25 as "1.250000" and True as "yes".
    """
    assert compose_stats([("growth_factor", "1.25"), ("evictions", b"on")]) == (
        b"STAT growth_factor 1.25\r\nSTAT evictions on\r\nEND\r\n"
    )
    assert compose_stats([("growth_factor", 1.25)]) == b"STAT growth_factor 1.250000\r\nEND\r\n"


def test_compose_stats_formats():
    assert compose_stats([]) == END
    assert compose_stats(iter([("a", 1), ("b", True), ("c", False), ("d", 0.5)])) == (
        b"STAT a 1\r\nSTAT b yes\r\nSTAT c no\r\nSTAT d 0.500000\r\nEND\r\n"
    )
    assert compose_stats([("big", U64), ("neg", -1)]) == (
        b"STAT big 18446744073709551615\r\nSTAT neg -1\r\nEND\r\n"
    )


# -- the composers, unit by unit -----------------------------------------------------


def test_value_header():
    assert value_header(b"k", 0, 0) == b"VALUE k 0 0\r\n"
    assert value_header(b"k", U32, 1048576) == b"VALUE k 4294967295 1048576\r\n"
    assert value_header(b"k", 1, 2, 0) == b"VALUE k 1 2 0\r\n"  # cas 0 is still a cas
    assert value_header(b"k", 1, 2, U64) == b"VALUE k 1 2 18446744073709551615\r\n"
    assert value_header(b"\xff\t", 0, 0) == b"VALUE \xff\t 0 0\r\n"  # keys are bytes


def test_compose_number():
    assert compose_number(0) == b"0\r\n"
    assert compose_number(U64) == b"18446744073709551615\r\n"


def test_compose_version():
    assert compose_version("1.6.18") == b"VERSION 1.6.18\r\n"


def test_reply_constants():
    """The fixed lines, as doc/protocol.txt spells them (and memcached sends, above)."""
    assert (STORED, NOT_STORED, EXISTS, NOT_FOUND) == (
        b"STORED\r\n",
        b"NOT_STORED\r\n",
        b"EXISTS\r\n",
        b"NOT_FOUND\r\n",
    )
    assert (DELETED, TOUCHED, END, OK, RESET, MN, CRLF) == (
        b"DELETED\r\n",
        b"TOUCHED\r\n",
        b"END\r\n",
        b"OK\r\n",
        b"RESET\r\n",
        b"MN\r\n",
        b"\r\n",
    )


# -- error_line ----------------------------------------------------------------------


def test_error_line():
    assert error_line(CommandError()) == b"ERROR\r\n"
    assert error_line(ClientError("bad data chunk")) == b"CLIENT_ERROR bad data chunk\r\n"
    assert error_line(ServerError("out of memory")) == b"SERVER_ERROR out of memory\r\n"
    assert error_line(CommandError("cannot pipeline")) == b"ERROR cannot pipeline\r\n"


@pytest.mark.parametrize("kind", [CommandError, ClientError, ServerError])
def test_error_line_noreply_is_empty(kind: type):
    assert error_line(kind("x", noreply=True)) == b""
    assert error_line(kind("x", noreply=True, close=True)) == b""


def test_error_line_close_keeps_the_line():
    exc = ClientError("line too long", close=True)
    assert (error_line(exc), exc.close, exc.noreply) == (
        b"CLIENT_ERROR line too long\r\n",
        True,
        False,
    )


def test_error_line_is_ascii():
    assert error_line(ClientError("bad \u00e9 key")) == b"CLIENT_ERROR bad ? key\r\n"


def test_error_kinds():
    for kind, prefix in [(CommandError, b"ERROR"), (ClientError, b"CLIENT_ERROR")]:
        assert issubclass(kind, ProtocolError) and kind.prefix == prefix
    assert issubclass(ServerError, ProtocolError) and ServerError.prefix == b"SERVER_ERROR"
    exc = ClientError("m")
    assert (str(exc), exc.message, exc.noreply, exc.close) == ("m", "m", False, False)
