"""Tests for protocol/memcache/admin.py: memcached's administrative commands.

Spec: memcached 1.6.18's proto_text.c (process_slabs_command,
process_slabs_automove_command, process_lru_crawler_command,
process_lru_command, process_watch_command, process_extstore_command,
process_refresh_certs_command; Debian builds it with extstore and TLS, and
without MEMCACHED_DEBUG, so `misbehave` and `debugtime` are unknown commands)
and doc/protocol.txt ("Slab Reassign", "Slabs Automove", "LRU_Crawler",
"LRU Tuning", "Watchers"). What memcached answers was observed on the wire:

- a wrong shape is ERROR; a bad number is `CLIENT_ERROR bad command line
  format` where memcached reads it with safe_strtol/strtoul and says so
  (slabs reassign, slabs automove, lru_crawler tocrawl and sleep), and a
  bare ERROR elsewhere (slabs automove ratio, lru, extstore);
- `noreply` as the last token silences slabs automove, lru, watch and
  extstore (errors too); slabs reassign and lru_crawler count it as a token;
- refresh_certs answers `Error TLS not enabled` even after noreply;
- the crawler's class list: all, hash, or comma-separated ids 1..63 (empty
  fields skipped; none at all: NOTSTARTED).

Every case is checked whole, bytewise and with trailing data; the table is
also sent, case by case, to a memcached of this module's own, and `watch` to
one started with -W (kvcache refuses watch as memcached -W does).
"""

from __future__ import annotations

import math
import time

import pytest
from cases import QUIET, Case, ask, err
from cases import case as C
from helpers import check
from oracle import private_memcached

from protocol.memcache import Admin, admin, compose_metadump
from protocol.memcache.numbers import strtod

ERROR = b"ERROR\r\n"
OK = b"OK\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
SAME = b"SAME src and dst class are identical\r\n"
BADCLASS = b"BADCLASS invalid src or dst class id\r\n"
NOSPARE = b"NOSPARE source class has no spare pages\r\n"
CRAWL_BADCLASS = b"BADCLASS invalid class id\r\n"
NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"
NO_TLS = b"Error TLS not enabled\r\n"


def A(cmd: str, *args: object, noreply: bool = False) -> Admin:
    """The Admin event for `cmd` with `args`."""
    return Admin(cmd, tuple(args), noreply)


MANY = b" ".join(b"%d" % i for i in range(2, 24))  # 22 more tokens: past memcached's 23

CASES = [
    # -- slabs ---------------------------------------------------------------------
    C("slabs-alone", b"slabs\r\n", err(ERROR)),
    C("slabs-unknown", b"slabs bogus 1 2\r\n", err(ERROR)),
    C("reassign", b"slabs reassign 1 0\r\n", (A("slabs reassign", 1, 0), NOSPARE)),
    C("reassign-same", b"slabs reassign 5 5\r\n", (A("slabs reassign", 5, 5), SAME)),
    C("reassign-any", b"slabs reassign -1 70\r\n", (A("slabs reassign", -1, 70), BADCLASS)),
    C("reassign-bad-class", b"slabs reassign 1 99\r\n", (A("slabs reassign", 1, 99), BADCLASS)),
    C("reassign-bad-number", b"slabs reassign x 2\r\n", err(BAD_FORMAT)),
    C("reassign-bad-dst", b"slabs reassign 1 2x\r\n", err(BAD_FORMAT)),
    C("reassign-short", b"slabs reassign 1\r\n", err(ERROR)),
    C("reassign-noreply-is-a-token", b"slabs reassign 1 2 noreply\r\n", err(ERROR)),
    C("automove", b"slabs automove 1\r\n", (A("slabs automove", 1), OK)),
    C("automove-0", b"slabs automove 0\r\n", (A("slabs automove", 0), OK)),
    C("automove-narrowed", b"slabs automove 4294967298\r\n", (A("slabs automove", 2), OK)),
    C("automove-3", b"slabs automove 3\r\n", err(ERROR)),
    C("automove-bad", b"slabs automove x\r\n", err(BAD_FORMAT)),
    C("automove-alone", b"slabs automove\r\n", err(ERROR)),
    C("automove-extra", b"slabs automove 1 2 3\r\n", (A("slabs automove", 1), OK)),
    C(
        "automove-noreply",
        b"slabs automove 1 noreply\r\n",
        (A("slabs automove", 1, noreply=True), b""),
    ),
    C("automove-noreply-as-level", b"slabs automove noreply\r\n", QUIET),
    C("automove-3-noreply", b"slabs automove 3 noreply\r\n", QUIET),
    C("automove-ratio", b"slabs automove ratio 0.5\r\n", (A("slabs automove", 0.5), OK)),
    C("automove-ratio-alone", b"slabs automove ratio\r\n", err(ERROR)),
    C("automove-ratio-bad", b"slabs automove ratio x\r\n", err(ERROR)),
    C("automove-ratio-huge", b"slabs automove ratio 1e999\r\n", err(ERROR)),
    C("automove-ratio-noreply", b"slabs automove ratio noreply\r\n", QUIET),
    C(
        "automove-24-tokens",  # the 23rd token holds the rest: not "noreply"
        b"slabs automove 1 " + MANY[:-3] + b" noreply\r\n",
        (A("slabs automove", 1), OK),
    ),
    # -- lru_crawler ------------------------------------------------------------------
    C("crawler-alone", b"lru_crawler\r\n", err(ERROR)),
    C("crawler-unknown", b"lru_crawler bogus\r\n", err(ERROR)),
    C("crawl-all", b"lru_crawler crawl all\r\n", (A("lru_crawler crawl", "all"), OK)),
    C("crawl-ids", b"lru_crawler crawl 1,,63,\r\n", (A("lru_crawler crawl", (1, 63)), OK)),
    C("crawl-narrowed", b"lru_crawler crawl 4294967297\r\n", (A("lru_crawler crawl", (1,)), OK)),
    C("crawl-none", b"lru_crawler crawl ,\r\n", (A("lru_crawler crawl", ()), NOTSTARTED)),
    C("crawl-0", b"lru_crawler crawl 0\r\n", (A("lru_crawler crawl", None), CRAWL_BADCLASS)),
    C("crawl-64", b"lru_crawler crawl 1,64\r\n", (A("lru_crawler crawl", None), CRAWL_BADCLASS)),
    C("crawl-hex", b"lru_crawler crawl 0x1\r\n", (A("lru_crawler crawl", None), CRAWL_BADCLASS)),
    C(
        "crawl-all-in-list",
        b"lru_crawler crawl all,1\r\n",
        (A("lru_crawler crawl", None), CRAWL_BADCLASS),
    ),
    C(
        "crawl-hash",  # a hash walk is for metadump only
        b"lru_crawler crawl hash\r\n",
        (A("lru_crawler crawl", "hash"), b"ERROR an unknown error happened\r\n"),
    ),
    C("crawl-alone", b"lru_crawler crawl\r\n", err(ERROR)),
    C("crawl-noreply-is-a-token", b"lru_crawler crawl all noreply\r\n", err(ERROR)),
    C(
        "metadump-bad-class",
        b"lru_crawler metadump x\r\n",
        (A("lru_crawler metadump", None), CRAWL_BADCLASS),
    ),
    C("metadump-none", b"lru_crawler metadump ,\r\n", (A("lru_crawler metadump", ()), NOTSTARTED)),
    C("tocrawl", b"lru_crawler tocrawl 5\r\n", (A("lru_crawler tocrawl", 5), OK)),
    C("tocrawl-negative", b"lru_crawler tocrawl -1\r\n", err(BAD_FORMAT)),
    C("sleep", b"lru_crawler sleep 1000000\r\n", (A("lru_crawler sleep", 1000000), OK)),
    C("sleep-bad", b"lru_crawler sleep x\r\n", err(BAD_FORMAT)),
    C(
        "sleep-over-a-second",
        b"lru_crawler sleep 1000001\r\n",
        err(b"CLIENT_ERROR sleep must be one second or less\r\n"),
    ),
    C(
        "enable-running",  # the crawler runs from the start
        b"lru_crawler enable\r\n",
        (A("lru_crawler enable"), b"ERROR failed to start lru crawler thread\r\n"),
    ),
    C("enable-extra", b"lru_crawler enable x\r\n", err(ERROR)),
    # -- lru ------------------------------------------------------------------------
    C("lru-alone", b"lru\r\n", err(ERROR)),
    C("lru-noreply", b"lru noreply\r\n", QUIET),
    C("lru-unknown", b"lru bogus\r\n", err(ERROR)),
    C("tune", b"lru tune 10 20 0.1 2.0\r\n", (A("lru tune", 10, 20, 0.1, 2.0), OK)),
    C("tune-extra", b"lru tune 10 20 0.1 2 x\r\n", (A("lru tune", 10, 20, 0.1, 2.0), OK)),
    C("tune-wraps", b"lru tune 4294967295 2 1 1\r\n", (A("lru tune", 4294967295, 2, 1.0, 1.0), OK)),
    C(
        "tune-pcts",
        b"lru tune 50 50 0.1 2\r\n",
        err(b"ERROR hot and warm pcts must not exceed 80\r\n"),
    ),
    C(
        "tune-factor",
        b"lru tune 10 20 0 2\r\n",
        err(b"ERROR hot/warm age factors must be greater than 0\r\n"),
    ),
    C("tune-bad", b"lru tune x 20 0.1 2\r\n", err(ERROR)),
    C("tune-short", b"lru tune 10 20 1\r\n", err(ERROR)),
    C("tune-underflow", b"lru tune 10 20 1e-310 1\r\n", err(ERROR)),
    C(
        "tune-noreply",
        b"lru tune 10 20 0.1 2 noreply\r\n",
        (A("lru tune", 10, 20, 0.1, 2.0, noreply=True), b""),
    ),
    C("tune-pcts-noreply", b"lru tune 50 50 0.1 2 noreply\r\n", QUIET),
    C("mode", b"lru mode segmented\r\n", (A("lru mode", "segmented"), OK)),
    C("mode-extra", b"lru mode flat x\r\n", (A("lru mode", "flat"), OK)),
    C("mode-bad", b"lru mode x\r\n", err(ERROR)),
    C("mode-alone", b"lru mode\r\n", err(ERROR)),
    C("mode-bad-noreply", b"lru mode x noreply\r\n", QUIET),
    C("temp_ttl", b"lru temp_ttl 61\r\n", (A("lru temp_ttl", 61), OK)),
    C("temp_ttl-negative", b"lru temp_ttl -1\r\n", (A("lru temp_ttl", -1), OK)),
    C("temp_ttl-bad", b"lru temp_ttl x\r\n", err(ERROR)),
    # -- extstore, refresh_certs, and what Debian's build lacks -----------------------
    C("extstore-alone", b"extstore\r\n", err(ERROR)),
    C("extstore-short", b"extstore item_size\r\n", err(ERROR)),
    C("extstore-item_size", b"extstore item_size 10\r\n", (A("extstore", "item_size", 10), OK)),
    C("extstore-max_frag", b"extstore max_frag 0.5\r\n", (A("extstore", "max_frag", 0.5), OK)),
    C("extstore-bad", b"extstore item_size x\r\n", err(ERROR)),
    C("extstore-unknown", b"extstore x y\r\n", err(ERROR)),
    C(
        "extstore-memchunks",
        b"extstore free_memchunks 1 2\r\n",
        (A("extstore", "free_memchunks", 1, 2), OK),
    ),
    C("extstore-memchunks-short", b"extstore free_memchunks 1\r\n", err(ERROR)),
    C("extstore-memchunks-class", b"extstore free_memchunks 64 1\r\n", err(ERROR)),
    C(
        "extstore-noreply",
        b"extstore drop_unread 1 noreply\r\n",
        (A("extstore", "drop_unread", 1, noreply=True), b""),
    ),
    C("extstore-bad-noreply", b"extstore max_frag x noreply\r\n", QUIET),
    C("refresh_certs", b"refresh_certs\r\n", (A("refresh_certs"), NO_TLS)),
    C(
        "refresh_certs-noreply",
        b"refresh_certs noreply\r\n",
        (A("refresh_certs", noreply=True), NO_TLS),
    ),
    C("misbehave", b"misbehave\r\n", err(ERROR)),
    C("debugtime", b"debugtime 1\r\n", err(ERROR)),
]

WATCH_REFUSED = b"CLIENT_ERROR watch commands not allowed\r\n"
WATCH_CASES = [  # memcached -W: refused before the arguments are looked at
    C("watch", b"watch\r\n", (A("watch"), WATCH_REFUSED)),
    C("watch-fetchers", b"watch fetchers mutations\r\n", (A("watch"), WATCH_REFUSED)),
    C("watch-bogus", b"watch bogus\r\n", (A("watch"), WATCH_REFUSED)),
    C("watch-noreply", b"watch noreply\r\n", (A("watch", noreply=True), b"")),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


@pytest.mark.parametrize("case", CASES + WATCH_CASES, ids=_ids(CASES + WATCH_CASES))
def test_case_parses(case: Case):
    """Events and error lines, whole, bytewise and with trailing data."""
    assert check(case.data) == case.ours


def test_case_ids_are_unique():
    ids = _ids(CASES + WATCH_CASES)
    assert len(ids) == len(set(ids))


@pytest.fixture(scope="module")
def own_memcached():
    """A memcached of this module's own: these commands change the whole server."""
    with private_memcached() as server:
        yield server


def test_cases_match_memcached(own_memcached):
    """memcached 1.6.18 answers each case with exactly the recorded bytes."""
    for case in CASES:
        for _ in range(20):  # a crawl started by an earlier case may still be running
            reply = ask(own_memcached, case.data)
            if not reply[0].startswith(b"BUSY"):
                break
            time.sleep(0.1)
        assert (case.id, reply) == (case.id, (case.theirs, False))


def test_watch_cases_match_memcached_without_watch():
    """kvcache refuses watch as a memcached started with -W does."""
    with private_memcached("-W") as server:
        for case in WATCH_CASES:
            assert (case.id, ask(server, case.data)) == (case.id, (case.theirs, False))


def test_every_command_has_a_parser():
    """The admin commands of memcached 1.6.18's command list (Debian's build)."""
    assert set(admin.COMMANDS) == {
        b"slabs",
        b"lru_crawler",
        b"lru",
        b"watch",
        b"extstore",
        b"refresh_certs",
    }


@pytest.mark.parametrize(
    "tok, value",
    [
        (b"0.8", 0.8),
        (b"-2", -2.0),
        (b"+.5e-2", 0.005),
        (b"5.", 5.0),
        (b"0x10", 16.0),
        (b"0x1p3", 8.0),
        (b"inf", math.inf),
        (b"-Infinity", -math.inf),
        (b" 7", 7.0),
        (b"7\t", 7.0),
        (b"1e-300", 1e-300),
        (b"0e999", 0.0),
    ],
)
def test_strtod_reads_like_glibc(tok: bytes, value: float):
    assert strtod(tok) == value


@pytest.mark.parametrize(
    "tok", [b"", b"x", b".", b"1e", b"5x", b"0x", b"infx", b"1e999", b"1e-999", b"1e-310"]
)
def test_strtod_rejects_like_safe_strtod(tok: bytes):
    """No number, trailing garbage, or ERANGE (overflow, underflow to 0 or subnormal)."""
    assert strtod(tok) is None


def test_strtod_nan():
    assert math.isnan(strtod(b"nan")) and math.isnan(strtod(b"NAN(x1)"))


def test_metadump_line():
    """memcached's crawler format: uri-encoded key, -1 for no exptime, a bare \\n."""
    assert compose_metadump(b"a b/%", 0, 1700000000, 7, False, 1, 61) == (
        b"key=a%20b%2F%25 exp=-1 la=1700000000 cas=7 fetch=no cls=1 size=61\n"
    )
    assert compose_metadump(b"k-._~Z9", 1700000100, 5, 1, True, 1, 70).startswith(
        b"key=k-._~Z9 exp=1700000100 la=5 cas=1 fetch=yes "
    )
