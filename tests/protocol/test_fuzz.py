"""Property tests for protocol/memcache/parser.py: its invariants under any input.

Spec: the invariants in parser.py's docstring (and h11's rule for sans-I/O
parsers), checked on arbitrary byte streams, both random bytes and streams
built from a grammar of valid-ish memcached text and meta commands (bad
tokens, huge lengths, noreply, data blocks of the wrong size, long lines),
fed in arbitrary chunks:

(a) only protocol.ProtocolError subclasses ever escape the parser;
(b) the events and error lines are the same for every chunking, but for
    memcached's one read-dependent rule: a read (a feed) that ends inside a
    line over max_line closes the connection silently; then the events
    before that close are those of the whole input;
(c) the parser never hangs: every next_event() call returns NEED_DATA or
    consumes input, so draining takes at most len(input) + 1 calls;
(d) memory is bounded: the parser holds at most max(max_get_line,
    item_size_max + 2) bytes plus the chunk just fed, and never holds the
    bytes of a refused (too large) value;
(e) parsing is linear: 4x the input takes well under 8x the time.

Grammar streams run on a parser with small limits (lines of 96 bytes, get
lines of 512, items of 1 KiB) so that every limit is crossed often.
"""

from __future__ import annotations

import gc
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ProtocolError, error_line
from protocol.memcache import NEED_DATA, Get, Parser, TooLarge
from protocol.memcache.text import ITEM_HEADER

SMALL = {"item_size_max": 1024, "max_line": 96, "max_get_line": 512}
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _bound(p: Parser) -> int:
    """The most a drained parser may hold: a partial line or an in-limit block."""
    return max(p.max_get_line, p.item_size_max + 2)


def _drain(p: Parser, out: list) -> None:
    """next_event() until NEED_DATA, checking (a) and (c); append what came out."""
    for _ in range(p.buffered + 2):
        before = p.buffered
        try:
            ev = p.next_event()
        except ProtocolError as exc:  # (a): anything else propagates and fails
            out.append((type(exc).__name__, exc.message, exc.noreply, exc.close))
            error_line(exc)  # every error renders
        else:
            if ev is NEED_DATA:
                # (c) again: asked before more input comes, as a server that parsed
                # ahead asks, it still says NEED_DATA (whatever the buffer became)
                assert p.next_event() is NEED_DATA
                return
            out.append(ev)
        assert p.buffered < before, (before, p.buffered)  # (c): progress
    raise AssertionError("next_event() never returned NEED_DATA")  # (c)


def feed_all(data: bytes, sizes: list[int] | None, reuse: bool = False, **limits) -> list:
    """Events and errors from `data` fed in pieces of `sizes` (cycled; None: whole).

    With `reuse`, each piece is a memoryview of one bytearray that is
    overwritten once the parser is drained, as a server's receive buffer is.
    """
    p = Parser(**limits)
    out: list = []
    sizes = sizes or [max(len(data), 1)]
    pos = 0
    for size in _cycle(sizes, len(data)):
        chunk = data[pos : pos + size]
        pos += size
        if reuse:
            scratch = bytearray(chunk)
            with memoryview(scratch) as view:
                p.feed(view)
        else:
            p.feed(chunk)
        assert p.buffered <= _bound(p) + len(chunk)  # (d)
        _drain(p, out)
        assert p.buffered <= _bound(p)  # (d), once drained
        if reuse:
            scratch[:] = b"\xff" * len(scratch)  # the parser must hold no reference
    if p.closed:
        out.append("CLOSE")
    return out


LONG_LINE_CLOSE = [("ClientError", "line too long", True, True), "CLOSE"]


def same_events(chunked: list, whole: list) -> bool:
    """(b): equal, or `chunked` closed where a read ended inside a long line (and
    agreed with `whole` until then)."""
    if chunked == whole:
        return True
    head = chunked[:-2]
    return chunked[-2:] == LONG_LINE_CLOSE and whole[: len(head)] == head


def _cycle(sizes: list[int], total: int):
    """Chunk sizes from `sizes`, repeated until they cover `total` bytes."""
    done = 0
    i = 0
    while done < total:
        size = sizes[i % len(sizes)]
        yield size
        done += size
        i += 1


# -- the grammar -----------------------------------------------------------------

EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b" \r\n", b"\r\r\n"])
SEP = st.sampled_from([b" ", b" ", b" ", b"  ", b"\t"])
KEYS = st.one_of(
    st.sampled_from([b"k", b"key", b"YWJj", b"!!!", b"a" * 250, b"a" * 251, b"k\x00y", b"\x80"]),
    st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b" ", b"_").replace(b"\n", b"_")),
)
NUMBERS = st.one_of(
    st.sampled_from(
        [b"0", b"1", b"-1", b"-0", b"+5", b"5x", b"abc", b"", b"4294967296", b"2147483648"]
        + [b"18446744073709551615", b"18446744073709551616", b" 7", b"\t7"]
    ),
    st.integers(-(2**70), 2**70).map(lambda n: b"%d" % n),
)
# Data block lengths: small, around the small item limit, past 64 KiB (where
# a parser may collect a block differently), and far past any limit.
_SHORT = st.integers(0, 40)
_NEAR_LIMIT = st.integers(SMALL["item_size_max"] - ITEM_HEADER - 20, SMALL["item_size_max"] + 8)
LENGTHS = st.one_of(
    _SHORT,
    _SHORT,
    _NEAR_LIMIT,
    _NEAR_LIMIT,
    st.integers(64 * 1024 - 8, 64 * 1024 + 3000),
    st.sampled_from([2**31 - 3, 2**31 - 2, 2**31, 2**32 + 1, 10**7]),
)
FLAG_CHARS = st.sampled_from(list(b"bcCDEfFhIJklLMNOPqRsStTuvxyZ1\x7f\xff"))


@st.composite
def flag_token(draw) -> bytes:
    c = bytes([draw(FLAG_CHARS)])
    if c == b"O":
        return c + b"x" * draw(st.sampled_from([0, 5, 31, 32, 40]))
    if c == b"M":
        return c + draw(st.sampled_from([b"", b"E", b"S", b"I", b"-", b"X", b"XX"]))
    return c + (draw(NUMBERS) if draw(st.booleans()) else b"")


@st.composite
def data_block(draw, n: int) -> bytes:
    """A block for an announced length `n`: right, short, long, or bad ending."""
    if n > 100_000:  # a refused value: send a part of it (the rest may never come)
        return b"v" * draw(st.integers(0, 3000))
    body = b"v" * n
    return draw(
        st.sampled_from([body + b"\r\n", body + b"\r\n", body + b"XX", body[:-1] + b"\r\n"])
        | st.just(body + b"\r\n" + b"extra\r\n")
    )


@st.composite
def storage(draw) -> bytes:
    cmd = draw(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend", b"cas"]))
    n = draw(LENGTHS)
    toks = [cmd, draw(KEYS), draw(NUMBERS), draw(NUMBERS), b"%d" % n]
    if cmd == b"cas":
        toks.append(draw(NUMBERS))
    if draw(st.booleans()):
        toks.append(b"noreply")
    if draw(st.integers(0, 9)) == 0:
        del toks[draw(st.integers(1, len(toks) - 1))]  # wrong arity
    return draw(SEP).join(toks) + draw(EOL) + draw(data_block(n))


@st.composite
def meta_set(draw) -> bytes:
    n = draw(LENGTHS)
    toks = [b"ms", draw(KEYS), b"%d" % n, *draw(st.lists(flag_token(), max_size=4))]
    return draw(SEP).join(toks) + draw(EOL) + draw(data_block(n))


@st.composite
def meta(draw) -> bytes:
    cmd = draw(st.sampled_from([b"mg", b"md", b"ma", b"me", b"mn"]))
    toks = [cmd]
    if draw(st.integers(0, 9)):
        toks.append(draw(KEYS))
    toks += draw(st.lists(flag_token(), max_size=draw(st.sampled_from([3, 22]))))
    return draw(SEP).join(toks) + draw(EOL)


@st.composite
def retrieval(draw) -> bytes:
    cmd = draw(st.sampled_from([b"get", b"gets", b"gat", b"gats", b"bget"]))
    toks = [cmd]
    if cmd.startswith(b"gat"):
        toks.append(draw(NUMBERS))
    toks += draw(st.lists(KEYS, max_size=draw(st.sampled_from([3, 60]))))
    return draw(SEP).join(toks) + draw(EOL)


@st.composite
def other(draw) -> bytes:
    line = draw(
        st.sampled_from(
            [
                [b"delete", b"<key>"],
                [b"delete", b"<key>", b"0"],
                [b"delete", b"<key>", b"noreply"],
                [b"delete", b"<key>", b"0", b"noreply"],
                [b"delete", b"<key>", b"<num>"],
                [b"incr", b"<key>", b"<num>"],
                [b"decr", b"<key>", b"<num>", b"noreply"],
                [b"touch", b"<key>", b"<num>"],
                [b"touch", b"<key>", b"<num>", b"noreply"],
                [b"flush_all"],
                [b"flush_all", b"<num>"],
                [b"flush_all", b"<num>", b"noreply"],
                [b"stats"],
                [b"stats", b"slabs"],
                [b"version"],
                [b"verbosity", b"<num>"],
                [b"cache_memlimit", b"<num>", b"noreply"],
                [b"shutdown", b"graceful"],
                [b"shutdown", b"<key>"],
                [b"quit"],
                [b"<key>"],
                [b""],
            ]
        )
    )
    toks = [draw(KEYS) if t == b"<key>" else draw(NUMBERS) if t == b"<num>" else t for t in line]
    return draw(SEP).join(toks) + draw(EOL)


@st.composite
def junk(draw) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:  # a line past max_line (closes), or a get line near max_get_line
        return draw(st.sampled_from([b"x", b"get ", b"  get ", b"ms k "])) + b"k " * draw(
            st.integers(40, 300)
        )
    if kind == 2:
        return b"\x80" + draw(st.binary(max_size=10))  # binary protocol magic
    return draw(st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\r\n\r\n"]))


COMMAND = st.one_of(storage(), meta_set(), meta(), retrieval(), other(), junk())
STREAM = st.lists(COMMAND, min_size=1, max_size=12).map(b"".join)
SHORT_STREAM = st.lists(COMMAND, min_size=1, max_size=5).map(b"".join)
CHUNKS = st.lists(st.integers(1, 700), min_size=1, max_size=8)


# -- (a) (b) (c) (d) on every input -----------------------------------------------


@FUZZ
@given(data=st.binary(max_size=3000), sizes=CHUNKS)
def test_random_bytes(data, sizes):
    """Random bytes: only ProtocolErrors, same results for any chunking."""
    whole = feed_all(data, None)
    assert same_events(feed_all(data, sizes), whole)
    assert same_events(feed_all(data, sizes, **SMALL), feed_all(data, None, **SMALL))


RANDOM_LINES = st.lists(st.binary(max_size=60), max_size=40).map(b"\r\n".join)


@FUZZ
@given(data=RANDOM_LINES, sizes=CHUNKS)
def test_random_lines(data, sizes):
    """Random bytes cut into short lines: the same, past the line-length check."""
    whole = feed_all(data, None, **SMALL)
    assert same_events(feed_all(data, sizes, **SMALL), whole)
    assert same_events(feed_all(data, [1], **SMALL), whole)


@FUZZ
@given(data=STREAM, sizes=CHUNKS)
def test_grammar_streams(data, sizes):
    """Valid-ish command streams: same results whole, chunked and bytewise."""
    whole = feed_all(data, None, **SMALL)
    assert same_events(feed_all(data, sizes, **SMALL), whole)
    assert same_events(feed_all(data, sizes, reuse=True, **SMALL), whole)
    if len(data) <= 4000:
        assert same_events(feed_all(data, [1], **SMALL), whole)


@FUZZ
@given(data=STREAM, sizes=CHUNKS)
def test_grammar_streams_default_limits(data, sizes):
    """The same streams with memcached's real limits (2048-byte lines, 1 MiB items)."""
    assert same_events(feed_all(data, sizes), feed_all(data, None))


@FUZZ
@given(head=SHORT_STREAM, tail=SHORT_STREAM, sizes=CHUNKS)
def test_trailing_data_keeps_earlier_events(head, tail, sizes):
    """More input never changes what earlier input produced (h11's trailing rule)."""
    first = feed_all(head, sizes, **SMALL)
    both = feed_all(head + tail, sizes, **SMALL)
    if first[-2:] == LONG_LINE_CLOSE:  # head ended in a long partial line: tail may end it
        assert both[: len(first) - 2] == first[:-2]
    elif first and first[-1] == "CLOSE":
        assert both == first  # a closed parser ignores everything after
    else:
        assert both[: len(first)] == first


@pytest.mark.parametrize(
    ("line", "limits"),
    [
        pytest.param(b"x" * 2048, {}, id="max_line"),
        pytest.param(b"mg " + b"k" * 13, {"max_line": 16}, id="small-max_line"),
        pytest.param(b"x" + b" k" * 31, {"max_line": 63, "max_get_line": 63}, id="not-a-get"),
    ],
)
def test_a_read_may_leave_a_partial_line_of_the_limit(line, limits):
    """max_line bytes without a newline wait for more; one byte more closes."""
    data = line + b"\r\n"
    assert feed_all(data, [len(line), 2], **limits) == feed_all(data, None, **limits)
    assert feed_all(data, [len(line) + 1], **limits) == LONG_LINE_CLOSE


def test_get_line_of_exactly_max_get_line():
    """A get line of max_get_line bytes parses however it is split; one more closes."""
    limits = {"max_line": 16, "max_get_line": 63}
    line = b"get" + b" k" * 30  # 63 bytes
    data = line + b"\r\n"
    assert feed_all(data, [len(line), 2], **limits) == feed_all(data, None, **limits)
    assert feed_all(line + b" k\r\n", [len(line) + 2], **limits) == LONG_LINE_CLOSE


def test_need_data_again_after_an_appended_read():
    """A line completed by a second read (the buffer grown in place), then NEED_DATA twice.

    The second call is what a server makes once it has parsed ahead; compiled, the
    fast path used to take the grown buffer for bytes there (TypeError).
    """
    p = Parser()
    p.feed(b"get a")
    assert p.next_event() is NEED_DATA
    p.feed(b"\r\n")
    assert p.next_event() == Get("get", [b"a"], False, None)
    assert p.next_event() is NEED_DATA
    assert p.next_event() is NEED_DATA
    p.feed(b"get b\r\n")
    assert p.next_event() == Get("get", [b"b"], False, None)
    assert p.next_event() is NEED_DATA


def test_nul_after_large_block():
    """A command after a 70 KB block is cut at its NUL however the block arrives."""
    data = b"set k 0 0 70000\r\n" + b"v" * 70000 + b"\r\nget a\x00b\r\n"
    whole = feed_all(data, None)
    assert whole[-1] == Get("get", [b"a"], False, None)  # memcached reads "get a"
    assert feed_all(data, [1460]) == whole


# -- (d) a refused value is never held ----------------------------------------------


def _feed_refused(line: bytes, size: int) -> tuple[list, int]:
    """Feed `line` and `size` value bytes (+\\r\\n) in 1460-byte chunks; (events, peak)."""
    p = Parser()
    out: list = []
    peak = 0
    p.feed(line)
    _drain(p, out)
    value = b"v" * 1460
    left = size + 2
    while left > 0:
        chunk = value[: min(left, 1460)]
        left -= len(chunk)
        p.feed(chunk)
        peak = max(peak, p.buffered)
        _drain(p, out)
        peak = max(peak, p.buffered)
    p.feed(b"mn\r\n")
    _drain(p, out)
    return out, peak


def test_refused_value_is_never_buffered():
    """A 5 MB too-large value in 1460-byte chunks: swallowed, never held."""
    size = 5 * 1000 * 1000
    for line, verb in ((b"set k 0 0 %d\r\n" % size, "set"), (b"ms k %d T0\r\n" % size, "ms")):
        out, peak = _feed_refused(line, size)
        assert peak < 64 * 1024, peak
        assert out[0] == TooLarge(verb, b"k", False)
        assert [type(e).__name__ for e in out[1:]] == ["MetaNoop"]


def test_flag_error_value_is_never_buffered():
    """ms with a bad flag swallows its (in-limit or not) block without holding it."""
    for size in (1000 * 1000, 5 * 1000 * 1000):
        out, peak = _feed_refused(b"ms k %d Tx\r\n" % size, size)
        assert peak < 64 * 1024, peak
        assert out[0][:2] == ("ClientError", "bad token in command line format")
        assert [type(e).__name__ for e in out[1:]] == ["MetaNoop"]


def test_long_get_line_is_bounded():
    """A get line past max_get_line closes the connection and frees the buffer."""
    p = Parser()
    out: list = []
    keys = b" k" * 730  # 1460 bytes
    p.feed(b"get")
    for _ in range(2 * p.max_get_line // len(keys)):
        p.feed(keys)
        _drain(p, out)
        assert p.buffered <= p.max_get_line + len(keys)
        if p.closed:
            break
    assert p.closed and p.buffered == 0
    assert out == [("ClientError", "line too long", True, True)]


# -- (e) linear time ------------------------------------------------------------------


def _best_time(make, n: int, repeat: int = 5) -> float:
    """The fastest of `repeat` runs of feeding make(n) in 1460-byte chunks.

    The cyclic GC is off while timing: its passes over the events kept grow
    with their number, which is the collector's cost, not the parser's. The
    time is this process's CPU time, not the wall clock: on a loaded machine
    (CI, or a test run beside benchmarks) every run of the big input could
    be preempted, which is the machine's load, not the parser's work.
    """
    data = make(n)
    best = float("inf")
    for _ in range(repeat):
        p = Parser(item_size_max=16 * 1024 * 1024)
        out: list = []
        gc.disable()
        try:
            t0 = time.process_time()
            for i in range(0, len(data), 1460):
                p.feed(data[i : i + 1460])
                for ev in p:
                    out.append(ev)
            best = min(best, time.process_time() - t0)
        finally:
            gc.enable()
        assert out, "nothing parsed"
    return best


def _ratio(make, small: int) -> float:
    return _best_time(make, 4 * small) / max(_best_time(make, small), 1e-6)


def test_value_parses_in_linear_time():
    """A 1 MB value vs a 4 MB value, both in 1460-byte chunks: ratio < 8."""

    def make(n):
        return b"set k 0 0 %d\r\n" % n + b"v" * n + b"\r\n"

    assert _ratio(make, 1024 * 1024) < 8


def test_meta_value_parses_in_linear_time():
    """The same for ms."""

    def make(n):
        return b"ms k %d T0\r\n" % n + b"v" * n + b"\r\n"

    assert _ratio(make, 1024 * 1024) < 8


def test_long_get_line_parses_in_linear_time():
    """A 200 KB multi-get line vs 800 KB: the newline scan never restarts."""

    def make(n):
        return b"get" + b" key" * (n // 4) + b"\r\n"

    assert _ratio(make, 200 * 1024) < 8


def test_pipelined_commands_parse_in_linear_time():
    """20k vs 80k small pipelined commands."""

    def make(n):
        return b"get key\r\nmg key v\r\nset k 0 0 1\r\nx\r\n" * (n // 4)

    assert _ratio(make, 20_000) < 8
