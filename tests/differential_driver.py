"""The differential test's driver: seeded operation streams, every result written out.

tests/test_compiled_vs_pure.py runs this script twice, in two processes: on
the repo's sources, where the hot modules (kvcache/compiled.py) import as
their extensions, and on a copy of the sources without any, where they
import as pure Python. Each run pickles

    {"status": compiled.status(), "files": {module: __file__},
     "records": {(stream, seed): [(op, result), ...]},
     "coverage": {(stream, seed): {counter: value}}}

and the test compares the records element by element. A stream is a function
of its seed only: every operation and its arguments come from
random.Random(seed), never from a result, so both runs perform the same
operations; a result is plain Python data (bytes longer than 2048 are kept as
their length and SHA-1). `coverage` holds counters that show a stream did
what it is for (items went far and came back); they are not compared.

Streams, each on one OS thread and deterministic but for what the far ones
leave out (with PYTHONHASHSEED fixed: hash() places keys in the index and
the cuckoo filter):

  parser    memcached text and meta commands, valid and malformed, every verb,
            concatenated per connection and fed to protocol.memcache.Parser in
            chunks cut at random points (bytes, bytearray, or a memoryview of
            a reused buffer): after every feed and every next_event() the event
            (its class and every field) or the error (class, message, noreply,
            close, reply line), and the parser's buffered/closed state; now and
            then next_event() is asked again after NEED_DATA, as a server that
            parsed ahead asks.
  dispatch  the same kind of commands through kvcache.server.Connection over a
            Dispatcher over a RemHashTable (loadtest/bench_dispatch.py's set-up:
            no sockets, a transport that keeps what is written), data_received
            called from the hub as the event loop calls it. A virtual clock
            (advanced between reads) drives expiry, so the reply bytes are
            compared as they are, but for the lines of `stats` that read the
            process (pid, uptime, time, rusage, the GC's counters, the
            evacuator's busy seconds). Every item stays resident (a 64 MiB
            heap, no far node). At checkpoints: the counters, table and heap.
            The server's and the hub's log records (a request or a green
            thread that raised) are part of each result.
  dispatch_far  the same with a far node (a farserver process on 127.0.0.1,
            an ephemeral port) and a 1 MiB heap of 64 KiB segments: items are
            written back, dropped, read back (by callback in the hub or in a
            green thread that took the connection over), updated at the node.
            Only commands whose replies cannot depend on where items are
            (Commands' `far`), a clock that stands still, cas uniques masked;
            the reply bytes are compared, not the counters.
  table     RemHashTable's API directly (set/get/get_many/peek/lookup_many/values_of/
            find_live/flags_of/cas_of/value_len/copy_value/delete/set_exptime/
            set_cas/set_state/clear), on a heap of 32 KiB segments small enough
            that the evacuator runs, with no far node (the cache forgets cold
            items, keeps hot ones). Deterministic: the evacuator's slices are
            unbounded in time and it runs only while the stream's one green
            thread waits for memory. Every result (slots and locations
            included) and, every 50 operations, the table's, heap's and
            evacuator's counters and the resident keys in index order.
  heap      runtime.heap.Heap alone: alloc (mutator and evacuator), free,
            pins (DerefScope) and unpins, retire, resize, views, headers,
            objects(); after each operation its stats, FIFO and segment ids.
  cuckoo    runtime.cuckoo.CuckooFilter: add/discard/contains through growth.
  farproto  protocol.far: frames (valid and malformed headers) fed to a
            FrameReader in random chunks, and the body codecs on random and
            truncated bodies.
  runtime   RemHashTable with the far node and a 1 MiB heap of 64 KiB segments:
            the evacuator writes items back and drops them, reads bring them
            back, append-like updates run locally or at the far node (AIFM's
            offload) as the item happens to be. When the evacuator runs and
            when write-back acks land depend on timing, so only what cannot
            depend on it is recorded: every value read (flags, exptime, cas,
            bytes, or a miss), each store's and update's outcome, delete's
            answer for a key that holds a live item (True wherever it is;
            for other keys the answer rests on filter entries that far
            replies remove asynchronously), and at checkpoints a read of
            every key. Residency, counters and hotness are not compared.

Usage: python tests/differential_driver.py OUT [--seeds 1,2] [--streams parser,heap]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import pickle
import random
import re
import sys
import time

# This script's directory (tests/) holds tests/protocol, tests/runtime, ...: off
# sys.path, so the packages of those names are the ones PYTHONPATH points at.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

STREAMS = ("parser", "dispatch", "dispatch_far", "table", "heap", "cuckoo", "farproto", "runtime")
SEEDS = (1, 2, 3)
BIG = 2048  # bytes: longer results are recorded as (length, sha1)
T0 = 1_700_000_000  # the virtual clock's start (unix seconds)


# -- results as plain data ----------------------------------------------------------


def canon(v: object) -> object:
    """`v` as plain, picklable data: types kept (the test compares them strictly)."""
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is bytes:
        if len(v) > BIG:
            return ("bytes", len(v), hashlib.sha1(v).hexdigest())
        return v
    if isinstance(v, bytearray | memoryview):
        return (type(v).__name__, canon(bytes(v)))
    if isinstance(v, int):  # IntEnum and friends
        return (type(v).__name__, int(v))
    if type(v) is list:
        return [canon(x) for x in v]
    if type(v) is tuple:
        return tuple(canon(x) for x in v)
    if type(v) is dict:
        return {canon(k): canon(x) for k, x in v.items()}
    if isinstance(v, BaseException):
        return ("raised", type(v).__name__, str(v))
    return ("object", type(v).__name__, repr(v))


def canon_error(exc: BaseException) -> tuple:
    """A ProtocolError as (class, message, noreply, close, reply line); other errors raw."""
    from protocol import ProtocolError, error_line

    if isinstance(exc, ProtocolError):
        return ("error", type(exc).__name__, exc.message, exc.noreply, exc.close, error_line(exc))
    return ("raised", type(exc).__name__, str(exc))


def canon_event(ev: object) -> tuple:
    """A parser event: its class and every field, in order."""
    from protocol.memcache import requests

    if ev is requests.NEED_DATA:
        return ("NEED_DATA",)
    fields = requests._all_slots(type(ev))
    out = [type(ev).__name__]
    out += [(name, canon(getattr(ev, name))) for name in fields]
    extra = getattr(ev, "__dict__", None)
    if extra:
        out += [(name, canon(extra[name])) for name in sorted(extra) if name not in fields]
    if type(ev).__name__ == "TooLarge":
        out.append(("error", canon_error(ev.error)))
    return tuple(out)


def chunk_sizes(rng: random.Random, total: int) -> list[int]:
    """Random cut points for `total` bytes: a mix of 1-byte, short, long and whole reads."""
    mode = rng.random()
    if total > 20_000 and mode < 0.25:
        mode = 0.25 + mode * 3  # no near-bytewise feeding of long streams
    sizes = []
    done = 0
    while done < total:
        if mode < 0.1:
            n = total  # whole
        elif mode < 0.25:
            n = rng.randint(1, 4)  # nearly bytewise
        else:
            n = rng.choice([1, 2, 3, 5, 8, 13, 40, 100, 300, 1460, 1460, 4096, 20_000, 70_000])
            n = rng.randint(1, n)
        n = min(n, total - done)
        sizes.append(n)
        done += n
    return sizes


# -- the command generator --------------------------------------------------------------

LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
NUMBERS = [
    b"0",
    b"1",
    b"7",
    b"-1",
    b"-0",
    b"+5",
    b"5x",
    b"abc",
    b"00012",
    b"4294967295",
    b"4294967296",
    b"2147483647",
    b"2147483648",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
]


KNOWN_CAS = (b"1000001", b"1000002")  # cas uniques ms/md E set, for cas and C to match
ADMIN = (
    b"slabs reassign 1 2\r\n",
    b"slabs reassign 1 1\r\n",
    b"slabs reassign -1 5\r\n",
    b"slabs reassign x 1\r\n",
    b"slabs automove 1\r\n",
    b"slabs automove 3\r\n",
    b"slabs automove ratio 0.5\r\n",
    b"lru_crawler crawl all\r\n",
    b"lru_crawler crawl 1,2\r\n",
    b"lru_crawler crawl 99\r\n",
    b"lru_crawler metadump all\r\n",
    b"lru_crawler metadump 1\r\n",
    b"lru_crawler metadump hash\r\n",
    b"lru_crawler enable\r\n",
    b"lru_crawler disable\r\n",
    b"lru_crawler tocrawl 5\r\n",
    b"lru_crawler sleep 10\r\n",
    b"lru tune 10 10 0.1 2\r\n",
    b"lru mode flat\r\n",
    b"lru mode bogus\r\n",
    b"lru temp_ttl 10 noreply\r\n",
    b"watch\r\n",
    b"watch fetchers noreply\r\n",
    b"extstore item_size 10\r\n",
    b"extstore max_frag 0.5\r\n",
    b"extstore bogus 1\r\n",
    b"refresh_certs\r\n",
)


class Commands:
    """Random memcached commands, valid and malformed, every verb, as wire bytes.

    With `far`, only commands whose replies cannot depend on where items are
    (resident or far): no stats, me, metadump or cachedump; no mg h/l (the
    fetched bit and access time stay local), no stale or win marks (I, N and
    R but ma's N), no base64 keys (the mark stays local), no cas compared
    but 0 or values no item has (cas uniques are masked in replies, being
    taken in a different order when an item is far: an offloaded append
    takes one before it learns the item is gone), and exptimes that do not
    pass while the clock stands still.
    """

    def __init__(self, rng: random.Random, item_size_max: int, far: bool = False):
        self.rng = rng
        self.item_size_max = item_size_max
        self.far = far
        self.plain = [b"k%d" % i for i in range(100 if far else 10)]
        self.plain += [b"p:%d" % i for i in range(3)]
        self.counters = [b"n%d" % i for i in range(4)]
        self.odd = [b"K" * 250, b"x\x01y", b"caf\xc3\xa9", b"a:b:c"]
        self.keys = self.plain + self.counters + self.odd
        self.makers = [
            (24 if far else 14, self.storage),
            (3, self.cas),
            (0 if far else 2, self.known_cas),
            (12, self.retrieval),
            (4, self.delete),
            (6, self.arith),
            (3, self.touch),
            (10, self.mg),
            (8, self.ms),
            (4, self.md),
            (5, self.ma),
            (0 if far else 2, self.me),
            (2, self.mn),
            (7, self.malformed),
            (3, self.server_wide),
            (0 if far else 2, self.stats),
            (2, self.admin),
            (3, self.junk),
        ]
        self.weights = [w for w, _ in self.makers]
        # set while making a store with a long block: only tokens that parse, so the
        # block is read as a block (a refused line leaves it to be read as lines,
        # one too long, which closes the connection)
        self.clean = False
        self.stores = 0  # store-like commands made: about the cas counter's value
        self.marked: list[tuple[bytes, bytes]] = []  # (key, cas) of each ms with E<KNOWN_CAS>

    def command(self) -> bytes:
        """One command (or junk), with its data block."""
        (maker,) = self.rng.choices([m for _, m in self.makers], self.weights)
        if maker in (self.storage, self.arith, self.ms, self.ma):
            self.stores += 1
        return maker()

    def connection(self, n: int) -> bytes:
        """A connection's bytes: n commands; it may open with the binary protocol's magic."""
        rng = self.rng
        head = b""
        if rng.random() < 0.04:
            head = b"\x80\x00\x00\x03get\x00" if rng.random() < 0.7 else b"\x80"
        cmds = [self.command() for _ in range(n)]
        if rng.random() < 0.3:  # a connection that closes near its end: quit, HTTP, a long line
            cmds.insert(
                rng.randrange(len(cmds) * 4 // 5, len(cmds) + 1),
                rng.choice(
                    [
                        b"quit\r\n",
                        b"GET / HTTP/1.1\r\n",
                        b"x" * rng.choice([2049, 3000, 17000]),
                        b"get " + b"k " * 9000 + b"\r\n",
                        b"y" * 20_000 + b"\r\n",
                    ]
                ),
            )
        return head + b"".join(cmds)

    # -- pieces

    def key(self) -> bytes:
        """A key of the stream; now and then one byte too long, or one never stored."""
        rng = self.rng
        r = rng.random()
        if self.clean:
            return rng.choice(self.keys)
        if r < 0.02:
            return b"K" * 251  # one byte too long
        if r < 0.05:
            return b"miss%d" % rng.randrange(3)
        return rng.choice(self.keys)

    def number(self) -> bytes:
        """A number token memcached may or may not take."""
        return self.rng.choice(NUMBERS)

    def exptime(self) -> bytes:
        """An exptime: never, relative, absolute, expired, or (rarely) not a number."""
        rng = self.rng
        if self.far:  # never, expired already, or not within the run (the clock stands)
            return rng.choice([b"0", b"0", b"0", b"-1", b"1000", b"100000", b"2592001"])
        return rng.choice(
            [
                b"0",
                b"0",
                b"0",
                b"1",
                b"3",
                b"100",
                b"1000",
                b"-1",
                b"%d" % (T0 + 5),
                b"%d" % (T0 + 100_000),
                b"%d" % (T0 - 10),
                b"2592000",
                b"2592001",
            ]
            + ([self.number()] if rng.random() < 0.05 and not self.clean else [])
        )

    def flags(self) -> bytes:
        """Client flags: mostly a u32, now and then a bad token."""
        rng = self.rng
        if self.clean or rng.random() < 0.9:
            return rng.choice([b"0", b"0", b"1", b"%d" % rng.randrange(2**32)])
        return self.number()

    def noreply(self) -> bytes:
        """A trailing noreply, a fifth of the time."""
        return b" noreply" if self.rng.random() < 0.2 else b""

    def size(self) -> int:
        """A value size: mostly small, some past 64 KiB, some around the item limit."""
        rng = self.rng
        r = rng.random()
        if self.far and r < 0.55:  # values that fill a 1 MiB heap
            return rng.randrange(2000, 60_000)
        if r < 0.75:
            return rng.randrange(0, 40)
        if r < 0.9:
            return rng.randrange(40, 3000)
        if r < 0.96:
            return rng.randrange(60_000, 140_000)  # around the parser's 64 KiB block path
        lim = self.item_size_max
        return rng.randrange(lim - 80, lim + 2000)  # around the item size limit

    def value(self, n: int) -> bytes:
        """`n` bytes of letters, or of digits (a number) for small sizes now and then."""
        rng = self.rng
        if n <= 20 and rng.random() < 0.4:
            return (b"%d" % rng.randrange(10**n if n else 1)).rjust(n, b"0")[:n]
        block = bytes(rng.choice(LETTERS) for _ in range(32))
        return (block * (n // 32 + 1))[:n]

    def block(self, line: bytes, data: bytes) -> bytes:
        """`line` (with a %d for the length), then the data block, right or wrong."""
        rng = self.rng
        r = rng.random()
        n = len(data)
        if r < 0.03:
            return line % n + data + b"XY"  # bad data chunk
        if r < 0.05:
            return line % (n + 2) + data + b"\r\n"  # longer than announced
        if r < 0.07 and n:
            return line % (n - 1) + data + b"\r\n"  # shorter than announced
        if r < 0.08:
            return line % n + data + b"\n"  # bare newline
        return line % n + data + b"\r\n"

    def sep(self) -> bytes:
        """The space between tokens (two now and then)."""
        return b"  " if self.rng.random() < 0.03 else b" "

    def eol(self) -> bytes:
        """A line end: mostly \\r\\n, now and then \\n or one with junk before it."""
        return self.rng.choice([b"\r\n"] * 12 + [b"\n", b" \r\n", b"\r\r\n"])

    # -- classic commands

    def storage(self) -> bytes:
        """set/add/replace/append/prepend with a data block."""
        rng = self.rng
        verb = rng.choice([b"set", b"set", b"set", b"add", b"replace", b"append", b"prepend"])
        data = self.value(self.size())
        self.clean = len(data) > 100
        key = self.key()
        if key in self.counters and rng.random() < 0.7:
            data = b"%d" % rng.choice([0, 1, 9, 99, 12345, 2**32, 2**64 - 1])
        s = self.sep()
        line = verb + s + key + s + self.flags() + s + self.exptime() + s + b"%d"
        line += self.noreply() + b"\r\n"
        self.clean = False
        return self.block(line, data)

    def cas(self) -> bytes:
        """cas with a unique that may match (near the counter, or one ms E gave)."""
        rng = self.rng
        data = self.value(self.size())
        self.clean = len(data) > 100
        # near the dispatcher's cas counter (a store or an incr takes one): some match
        unique = b"%d" % rng.randrange(max(1, self.stores - 8), self.stores + 2)
        if rng.random() < 0.3:
            unique = rng.choice([*KNOWN_CAS, b"0"])
        if self.far:
            unique = rng.choice([b"0", b"18446744073709551615"])
        elif not self.clean and rng.random() < 0.2:
            unique = self.number()
        key = self.key()
        if self.marked and rng.random() < 0.5:  # an item ms E may have given a known cas
            key, unique = rng.choice(self.marked)
        line = b"cas %s %s %s %%d %s%s\r\n" % (
            key,
            self.flags(),
            self.exptime(),
            unique,
            self.noreply(),
        )
        self.clean = False
        return self.block(line, data)

    def known_cas(self) -> bytes:
        """ms giving an item a known cas (E), then a command that names it (or nearly)."""
        rng = self.rng
        key = rng.choice(self.plain + self.counters)
        unique = rng.choice(KNOWN_CAS)
        named = unique if rng.random() < 0.7 else rng.choice([*KNOWN_CAS, b"0", b"7"])
        first = b"ms %s %d E%s\r\n%s\r\n" % (key, 2, unique, b"12")
        then = rng.choice(
            [
                b"cas %s 0 0 2 %s\r\nab\r\n" % (key, named),
                b"ms %s 2 C%s c\r\nab\r\n" % (key, named),
                b"ms %s 2 C%s MA\r\nab\r\n" % (key, named),
                b"md %s C%s q\r\n" % (key, named),
                b"md %s C%s I T30\r\n" % (key, named),
                b"ma %s C%s v\r\n" % (key, named),
                b"mg %s c v\r\n" % key,
                b"gets %s\r\n" % key,
            ]
        )
        return first + then

    def retrieval(self) -> bytes:
        """get/gets/gat/gats/bget of one to forty keys."""
        rng = self.rng
        cmd = rng.choice([b"get", b"get", b"get", b"gets", b"gets", b"gat", b"gats", b"bget"])
        keys = b" ".join(self.key() for _ in range(rng.choice([1, 1, 1, 2, 3, 5, 40])))
        if cmd.startswith(b"gat"):
            return b"%s %s %s%s" % (cmd, self.exptime(), keys, self.eol())
        return b"%s%s%s%s" % (cmd, self.sep(), keys, self.eol())

    def delete(self) -> bytes:
        """delete, with and without 0 and noreply, and bad tails."""
        tail = self.rng.choice([b"", b"", b" 0", b" noreply", b" 0 noreply", b" 5", b" 0 0"])
        return b"delete %s%s%s" % (self.key(), tail, self.eol())

    def arith(self) -> bytes:
        """incr/decr, mostly of a counter."""
        rng = self.rng
        verb = rng.choice([b"incr", b"decr"])
        key = rng.choice(self.counters) if rng.random() < 0.7 else self.key()
        delta = rng.choice([b"1", b"5", b"100", b"18446744073709551615", self.number()])
        return b"%s %s %s%s%s" % (verb, key, delta, self.noreply(), self.eol())

    def touch(self) -> bytes:
        """touch with an exptime."""
        return b"touch %s %s%s%s" % (self.key(), self.exptime(), self.noreply(), self.eol())

    # -- meta commands

    def meta_flag(self, c: bytes) -> bytes:
        """Flag character `c` with a token where it takes one (good, or now and then bad)."""
        rng = self.rng
        if c in b"TN":
            if self.far:
                return c + rng.choice([b"0", b"-1", b"x", self.exptime()])
            return c + rng.choice([b"0", b"1", b"100", b"-1", b"x", self.exptime()])
        if c == b"R":
            return c + rng.choice([b"30", b"500", b"x"])
        if c == b"O":
            return c + bytes(rng.choice(LETTERS) for _ in range(rng.choice([0, 3, 31, 40])))
        if c == b"F":
            return c + self.flags()
        if c in b"DJ":
            return c + rng.choice([b"1", b"7", b"13", b"18446744073709551615", self.number()])
        if c in b"CE":  # E gives an item a cas that cas and C can name (KNOWN_CAS)
            return c + rng.choice([*KNOWN_CAS, b"%d" % rng.randrange(1, 60), b"0", self.number()])
        if c == b"M":
            return c + rng.choice([b"S", b"E", b"A", b"P", b"R", b"I", b"+", b"D", b"-", b"X", b""])
        if c == b"S":
            return c + b"%d" % rng.randrange(10)
        return c

    def meta_flags(self, allowed: bytes, most: int) -> list[bytes]:
        """Up to `most` distinct flags of `allowed`; a bad, repeated or extra one now and then."""
        rng = self.rng
        chars = rng.sample(allowed, min(len(allowed), rng.randrange(0, most + 1)))
        flags = [self.meta_flag(bytes([c])) for c in chars]
        if self.clean:
            return flags
        if rng.random() < 0.05:
            flags.append(rng.choice([b"y", b"\x7f", b"v", b"1", b"b"]))  # unknown or repeated
        if rng.random() < 0.02:
            flags += [b"v"] * 20  # too many tokens
        return flags

    def meta_key(self, flags: list[bytes]) -> bytes:
        """A key for a meta command: plain, base64 with b added to `flags`, or bad base64."""
        rng = self.rng
        key = self.key()
        if rng.random() < 0.08 and len(key) <= 180 and not self.far:
            flags.append(b"b")
            return base64.b64encode(key)
        if rng.random() < 0.01 and not self.clean and not self.far:
            flags.append(b"b")
            return b"!!!"
        return key

    def mg(self) -> bytes:
        """mg with up to six flags."""
        flags = self.meta_flags(b"vkcfstqOTuv" if self.far else b"vkcfstqOTNRuhlEv", 6)
        key = self.meta_key(flags)
        return b" ".join([b"mg", key, *flags]) + self.eol()

    def ms(self) -> bytes:
        """ms with up to four flags and its data block (or a bad length)."""
        rng = self.rng
        data = self.value(self.size())
        self.clean = len(data) > 100
        flags = self.meta_flags(b"TFqkOcMS" if self.far else b"TFqkOcMCISE", 4)
        key = self.meta_key(flags)
        self.clean = False
        if key in self.counters:
            data = b"%d" % rng.randrange(1000)
        line = b" ".join([b"ms", key, b"%d", *flags]) + b"\r\n"
        self.marked += [(key, f[1:]) for f in flags if f[:1] == b"E" and f[1:] in KNOWN_CAS]
        if rng.random() < 0.03 and len(data) <= 100:
            line = b"ms %s %s\r\n" % (key, rng.choice([b"x", b"-1", b""]))
            return line + data + b"\r\n"
        return self.block(line, data)

    def md(self) -> bytes:
        """md with up to three flags."""
        flags = self.meta_flags(b"qkOTx" if self.far else b"qkOTCIxE", 3)
        key = self.meta_key(flags)
        return b" ".join([b"md", key, *flags]) + self.eol()

    def ma(self) -> bytes:
        """ma with up to five flags, mostly of a counter."""
        rng = self.rng
        flags = self.meta_flags(b"NJDTqvtckOM" if self.far else b"NJDTqvtckOMCE", 5)
        key = rng.choice(self.counters) if rng.random() < 0.6 else self.meta_key(flags)
        return b" ".join([b"ma", key, *flags]) + self.eol()

    def me(self) -> bytes:
        """me of a key (base64 with b now and then)."""
        rng = self.rng
        key = self.key()
        if rng.random() < 0.1:
            return b"me %s b\r\n" % base64.b64encode(key)
        return b"me %s\r\n" % key

    def mn(self) -> bytes:
        """mn."""
        return b"mn" + self.eol()

    # -- the rest

    def malformed(self) -> bytes:
        """One of memcached's error paths."""
        rng = self.rng
        key = self.key()
        return rng.choice(
            [
                b"set %s x 0 1\r\nz\r\n" % key,
                b"set %s 0 x 1\r\nz\r\n" % key,
                b"set %s 0 0 -1\r\n" % key,
                b"set %s 0 0\r\n" % key,
                b"set %s 0 0 1 2 3\r\nz\r\n" % key,
                b"set %s 0 0 4294967296\r\n" % key,
                b"cas %s 0 0 1\r\nz\r\n" % key,
                b"incr %s\r\n" % key,
                b"incr %s x\r\n" % key,
                b"decr %s -1 noreply\r\n" % key,
                b"touch %s\r\n" % key,
                b"get\r\n",
                b"gets \r\n",
                b"gat 10\r\n",
                b"gat x %s\r\n" % key,
                b"bogus %s\r\n" % key,
                b"GET %s\r\n" % key,
                b"mg\r\n",
                b"ms %s\r\n" % key,
                b"md\r\n",
                b"ma\r\n",
                b"me\r\n",
                b"verbosity\r\n",
                b"verbosity x\r\n",
                b"flush_all x\r\n",
                b"flush_all 1 2 3\r\n",
                b"cache_memlimit\r\n",
                b"cache_memlimit x\r\n",
                b"delete\r\n",
                b"set %s 0 0 1\r\nz" % key,  # block without its \r\n: eats the next line
            ]
        )

    def server_wide(self) -> bytes:
        """version, verbosity, flush_all (now or delayed), shutdown, cache_memlimit."""
        rng = self.rng
        line = rng.choice(
            [
                b"version\r\n",
                b"verbosity 1\r\n",
                b"verbosity 0 noreply\r\n",
                b"flush_all\r\n" if rng.random() < 0.3 else b"mn\r\n",
                b"flush_all 0\r\n",
                b"flush_all noreply\r\n" if rng.random() < 0.3 else b"version\r\n",
                b"flush_all -1\r\n",
                b"flush_all 100000\r\n",  # a delayed flush: its timer never fires in a run
                b"flush_all %d noreply\r\n" % (T0 + 1_000_000),
                b"shutdown\r\n",
                b"shutdown graceful\r\n",
                b"shutdown bogus\r\n",
                b"cache_memlimit 2\r\n",
                b"cache_memlimit 100 noreply\r\n",
                b"cache_memlimit 4294967295\r\n",
            ]
        )
        if self.far and line.startswith(b"flush_all") and rng.random() < 0.8:
            return b"mn\r\n"  # items have to pile up to go far
        return line

    def stats(self) -> bytes:
        """stats and its groups, valid and not."""
        rng = self.rng
        return rng.choice(
            [
                b"stats\r\n",
                b"stats settings\r\n",
                b"stats items\r\n",
                b"stats slabs\r\n",
                b"stats sizes\r\n",
                b"stats far\r\n",
                b"stats detail on\r\n",
                b"stats detail off\r\n",
                b"stats detail dump\r\n",
                b"stats detail\r\n",
                b"stats cachedump 1 0\r\n",
                b"stats cachedump 1 3\r\n",
                b"stats cachedump 2 1\r\n",
                b"stats cachedump 99 1\r\n",
                b"stats cachedump x\r\n",
                b"stats reset\r\n",
                b"stats bogus\r\n",
            ]
        )

    def admin(self) -> bytes:
        """An administrative command (ADMIN)."""
        line = self.rng.choice(ADMIN)
        return b"version\r\n" if self.far and b"metadump" in line else line

    def junk(self) -> bytes:
        """Empty lines, random bytes, NULs, long lines, a long get line."""
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return rng.choice([b"\r\n", b"\n", b"   \r\n", b"\r\n\r\n", b"\t\r\n"])
        if r < 0.5:  # random bytes on one line
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            return raw.replace(b"\n", b"_") + b"\r\n"
        if r < 0.8:  # a NUL inside a command line
            return b"get %s\x00junk %s\r\n" % (self.key(), self.key())
        if r < 0.85:  # a long complete line: closes unless one read holds it whole
            return b"z" * rng.choice([2100, 3000, 16000]) + b"\r\n"
        if r < 0.95:  # a long get line, fine for a get
            return b"get " + b" ".join(rng.choice(self.plain) for _ in range(700)) + b"\r\n"
        return b"mg " + b"k" * 300 + b" v\r\n"


# -- stream: the parser -------------------------------------------------------------------

PARSER_LIMITS = [
    {},  # memcached's: 2048-byte lines, 1 MiB items
    {"item_size_max": 4096, "max_line": 96, "max_get_line": 700, "max_read": 1024},
    {"item_size_max": 200_000},
]


def stream_parser(seed: int) -> tuple[list, dict]:
    """Connections of random commands through Parser, cut at random points."""
    from protocol import ProtocolError
    from protocol.memcache import NEED_DATA, Parser

    rng = random.Random(seed)
    records: list = []
    events = 0
    for conn in range(16):
        limits = rng.choices(PARSER_LIMITS, [6, 2, 2])[0]
        gen = Commands(rng, limits.get("item_size_max", 1 << 20))
        data = gen.connection(rng.randrange(20, 300))
        p = Parser(**limits)
        pos = 0
        scratch = bytearray()
        for nfeed, size in enumerate(chunk_sizes(rng, len(data))):
            chunk = data[pos : pos + size]
            kind = rng.choices(["bytes", "bytearray", "view"], [6, 1, 2])[0]
            op = ("feed", conn, pos, pos + size, kind)
            pos += size
            if kind == "bytearray":
                p.feed(bytearray(chunk))
            elif kind == "view":  # a server's receive buffer: overwritten once drained
                scratch[:] = chunk
                with memoryview(scratch) as view:
                    p.feed(view)
            else:
                p.feed(chunk)
            records.append((op, (p.buffered, p.closed)))
            for n in range(p.buffered + 3):
                op = ("next_event", conn, nfeed, n)
                try:
                    ev = p.next_event()
                except ProtocolError as exc:
                    result = canon_error(exc)
                except Exception as exc:  # a bug: recorded, the connection abandoned
                    records.append((op, ("raised", type(exc).__name__, str(exc))))
                    break
                else:
                    if ev is NEED_DATA:
                        records.append((op, ("NEED_DATA", p.buffered, p.closed)))
                        if rng.random() < 0.3:
                            # asked again before more input comes, as a server does
                            # once it has parsed ahead (kvcache.server's `ahead`)
                            op = ("next_event again", conn, nfeed, n)
                            try:
                                again = canon_event(p.next_event())
                            except Exception as exc:
                                again = canon_error(exc)
                            records.append((op, (again, p.buffered, p.closed)))
                        break
                    events += 1
                    result = canon_event(ev)
                records.append((op, (result, p.buffered, p.closed)))
            else:
                records.append((("hang", conn, nfeed), p.buffered))
            if kind == "view":
                scratch[:] = b"\xff" * len(scratch)  # the parser must hold no reference
    return records, {"events": events}


# -- stream: the dispatcher end to end ----------------------------------------------------

# `stats` lines that read the process, not the cache: their values are masked
_PROCESS_STATS = re.compile(
    rb"^(STAT (?:pid|uptime|time|rusage_user|rusage_system|evac_busy_seconds"
    rb"|gc_gen\d+_collections|gc_tracked_objects)) [^\r]*\r$",
    re.M,
)


class Clock:
    """A virtual unix clock (seconds): the dispatcher's and the table's."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Transport:
    """What Connection writes to: keeps the bytes, notes close and flow control."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.events: list[str] = []  # pause_reading/resume_reading calls

    def write(self, data: object) -> None:
        """Keep `data`."""
        assert not self.closed, "write after close"
        self.out += data

    def is_closing(self) -> bool:
        """True once closed."""
        return self.closed

    def close(self) -> None:
        """Note the close."""
        self.closed = True

    def pause_reading(self) -> None:
        """Note flow control."""
        self.events.append("pause")

    def resume_reading(self) -> None:
        """Note flow control."""
        self.events.append("resume")

    def get_extra_info(self, name: str, default: object = None) -> object:
        """A made-up peer address."""
        return ("127.0.0.1", 40000) if name == "peername" else default


class LogRecords(logging.Handler):
    """Keeps the log records of the server (a request that raised is logged there)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's level, message and exception."""
        exc = record.exc_info[1] if record.exc_info else None
        self.lines.append((record.levelname, record.getMessage(), canon(exc)))


def _table_state(table, disp=None) -> dict:
    """Counters and shape of a table (and its dispatcher) that must match exactly."""
    mgr = table.manager
    ev = dict(mgr.evacuator.stats())
    ev.pop("evac_busy_seconds")
    out = {
        "len": len(table),
        "keys": table.keys(),
        "free_count": table.free_count,
        "words": len(table.words),
        "resident_far": table.resident_far,
        "filter": len(table.filter),
        "table": dict(table.stats),
        "heap": mgr.heap.stats(),
        "fifo": list(mgr.heap.fifo),
        "evacuator": ev,
        "manager": dict(mgr.counters),
    }
    if disp is not None:
        out["counters"] = disp.counter_values()
        out["detail"] = {k: list(v) for k, v in disp.detail.items()}
    return canon(out)


def _replies(data: bytes, far: bool) -> object:
    """Reply bytes as compared: process stats masked; with `far`, cas uniques too."""
    data = _PROCESS_STATS.sub(rb"\1 *\r", data)
    if far:
        data = _VALUE_CAS.sub(rb"\1 *\r", data)
        data = _META_CAS.sub(rb"\1 c*", data)
    return data if len(data) <= 65536 else canon(data)


# a cas unique in a gets reply and in meta replies (their c flag)
_VALUE_CAS = re.compile(rb"^(VALUE \S+ \d+ \d+) \d+\r$", re.M)
_META_CAS = re.compile(rb"^((?:HD|VA|EN|NF|NS|EX)\b[^\r\n]*?) c\d+", re.M)
FAR_NOW = 4_000_000_000  # the far dispatch stream's clock: past any exptime a node sees pass


def stream_dispatch(seed: int, node=None) -> tuple[list, dict]:
    """Random command bytes through Connection.data_received; the reply bytes.

    With a far `node`: a 1 MiB heap of 64 KiB segments whose items the
    evacuator writes to the node, commands whose replies cannot depend on
    where items are (Commands' `far`), a clock that stands still, cas
    uniques masked; the reply bytes are compared, not the counters.
    """
    from kvcache.dispatcher import Dispatcher
    from kvcache.server import Listener
    from runtime import hub as _hub
    from runtime.farclient import FarClient
    from runtime.hashtable import RemHashTable
    from runtime.manager import Manager

    far = node is not None
    rng = random.Random(seed)
    item_size_max = 128 * 1024
    clock = Clock(float(FAR_NOW if far else T0))
    records: list = []
    logs = LogRecords()
    # a request that raised is logged by the server, a green thread that raised by the hub
    loggers = [logging.getLogger("kvcache.server"), logging.getLogger("runtime.hub")]
    for log in loggers:
        log.addHandler(logs)
        log.propagate = False
    stats = {"reads": 0, "reply_bytes": 0}

    def main() -> None:
        hub = _hub.get_hub()
        if far:
            client = FarClient("127.0.0.1", node.port, timeout=20)
            mgr = Manager(1 << 20, client, segment_size=65536)
        else:
            mgr = Manager(64 << 20)  # every item stays resident: no evacuation, no far node
        mgr.start()
        if far:
            assert client.wait_ready(10), "far node not reachable"
        table = RemHashTable(mgr, clock=clock)
        disp = Dispatcher(table, item_size_max=item_size_max, clock=clock)
        listener = Listener(disp, hub, 1024, item_size_max)
        disp.stats_source = listener.stats
        gen = Commands(rng, item_size_max, far=far)
        for conn_no in range(10):
            conn = listener.protocol()
            transport = Transport()
            conn.connection_made(transport)
            data = gen.connection(rng.randrange(40, 200))
            pos = 0
            for nread, size in enumerate(chunk_sizes(rng, len(data))):
                if rng.random() < 0.08 and not far:
                    step = rng.choice([1, 1, 2, 4, 31])
                    clock.now += step
                    records.append((("clock", conn_no, nread), step))
                chunk = data[pos : pos + size]
                op = ("data_received", conn_no, pos, pos + size)
                pos += size
                hub.schedule(conn.data_received, chunk)  # from the hub, as the loop calls it
                for _ in range(20_000):  # until no request of it is parked or far
                    _hub.sleep(0)
                    _hub.sleep(0)  # a connection a greenlet gave back resumes in the hub
                    if not conn.owned:
                        break
                    _hub.sleep(0.001)
                stats["reads"] += 1
                stats["reply_bytes"] += len(transport.out)
                out = _replies(bytes(transport.out), far)
                del transport.out[:]
                records.append((op, (out, transport.closed, conn.owned, canon(logs.lines))))
                logs.lines = []
                if nread % 40 == 39 and not far:
                    records.append((("state", conn_no, nread), _table_state(table, disp)))
                if transport.closed:
                    break
            conn.connection_lost(None)
            if not far:
                records.append((("end", conn_no), (transport.events, _table_state(table, disp))))
        stats.update(mgr.stats())
        stats.update(("table_" + k, v) for k, v in table.stats.items())
        stats.update(disp.counters)
        stats["takeovers"] = listener.takeovers
        stats["far_gets_in_hub"] = listener.far_gets
        mgr.close()

    try:
        _hub.run(main)
    finally:
        for log in loggers:
            log.removeHandler(logs)
            log.propagate = True
    return records, stats


def stream_dispatch_far(seed: int, node) -> tuple[list, dict]:
    """stream_dispatch with a far node."""
    return stream_dispatch(seed, node)


# -- stream: the table on its own, evacuating with no far node ---------------------------


def _item(item) -> object:
    """Every field of a found Item (its location too: deterministic here)."""
    if item is None:
        return None
    seg = item.seg.id if item.seg is not None else None
    return canon(
        (
            item.key,
            item.flags,
            item.exptime,
            item.cas,
            bytes(item.value),
            item.atime,
            item.state,
            item.slot,
            seg,
            item.off,
        )
    )


def _value(rng: random.Random, n: int) -> bytes:
    block = bytes(rng.choice(LETTERS) for _ in range(16))
    return (block * (n // 16 + 1))[:n]


TABLE_OPS = (
    "set",
    "get",
    "get_many",
    "peek",
    "lookup_many",
    "values_of",
    "find_live",
    "delete",
    "change",
)
TABLE_OPS += ("clear", "resident")
TABLE_WEIGHTS = (300, 200, 50, 50, 50, 20, 70, 80, 100, 1, 99)


def stream_table(seed: int) -> tuple[list, dict]:
    """RemHashTable's API, no far node, a heap small enough to evacuate (forgetting)."""
    from runtime import hub as _hub
    from runtime.hashtable import FETCHED, STALE, TOKEN_SENT, RemHashTable
    from runtime.manager import Manager
    from runtime.scope import DerefScope

    rng = random.Random(seed)
    clock = Clock(float(T0))
    records: list = []
    cover: dict = {}

    def main() -> None:
        # 32 segments of 32 KiB; slices unbounded in time: the evacuator runs only
        # while this green thread waits for memory, so its work is deterministic
        mgr = Manager(32 * 32768, segment_size=32768, slice_seconds=1e9, alloc_timeout=30)
        mgr.start()
        table = RemHashTable(mgr, clock=clock, expected_far_items=1024)
        keys = [b"t%d" % i for i in range(400)] + [b"T" * 250, b"\x00\xff"]
        scope = DerefScope()
        items: list = []  # Items found through `scope` (valid while it pins them)
        cas = 0

        def key() -> bytes:
            return rng.choice(keys)

        for n in range(2500):
            what = rng.choices(TABLE_OPS, TABLE_WEIGHTS)[0]
            if rng.random() < 0.02:
                clock.now += rng.choice([1, 2, 10])
            if what == "set":
                size = rng.choice([0, 5, 20, 100, 300, 1000, 3000, 9000, 40_000])
                value = _value(rng, rng.randint(0, size))
                kind = rng.choice(["bytes", "bytes", "bytearray", "view"])
                if kind == "bytearray":
                    value = bytearray(value)
                elif kind == "view":
                    value = memoryview(value)
                exptime = rng.choice([0, 0, 0, T0 + 5, T0 + 1000, 1])
                cas += 1
                k = key()
                op = ("set", k, len(value), kind, exptime, cas)
                scope.release()  # never wait for memory holding pins
                items = []
                table.set(k, value, rng.randrange(2**32), exptime, cas)
                result = table.slot_of(k)
            elif what == "get":
                k = key()
                op = ("get", k)
                item = table.get(scope, k)
                if item is not None:
                    items.append(item)
                result = _item(item)
            elif what == "get_many":
                ks = [key() for _ in range(rng.randrange(1, 6))]
                op = ("get_many", ks)
                found = table.get_many(scope, ks)
                items += [i for i in found if i is not None]
                result = [_item(i) for i in found]
            elif what == "peek":
                k = key()
                op = ("peek", k)
                item = table.peek(scope, k)
                if item is not None:
                    items.append(item)
                result = _item(item)
            elif what == "lookup_many":
                ks = [key() for _ in range(rng.randrange(1, 6))]
                now = int(clock.now)
                op = ("lookup_many", ks, now)
                result = [
                    None if x is None else (x[0], x[1], bytes(x[2]))
                    for x in table.lookup_many(scope, ks, now)
                ]
            elif what == "values_of":
                ks = [key() for _ in range(rng.randrange(1, 6))]
                now = int(clock.now)
                op = ("values_of", ks, now)
                result = table.values_of(ks, now)
            elif what == "find_live":
                k = key()
                now = int(clock.now)
                op = ("find_live", k, now)
                slot = table.find_live(k, now)
                result = [slot]
                if slot >= 0:
                    buf = bytearray(b"<")
                    table.copy_value(slot, buf)
                    result += [
                        table.flags_of(slot),
                        table.cas_of(slot),
                        table.value_len(slot),
                        bytes(buf),
                    ]
            elif what == "delete":
                k = key()
                op = ("delete", k)
                scope.release()
                items = []
                result = table.delete(k)
            elif what == "change" and items:
                item = rng.choice(items)
                field = rng.choice(["exptime", "cas", "state"])
                op = ("change", item.key, item.slot, field)
                if table._find(item.key, hash(item.key)) != item.slot:
                    result = "moved"  # the evacuator moved it or a set replaced it
                elif field == "exptime":
                    table.set_exptime(item, rng.choice([0, T0 + 3, T0 + 500, 1]))
                    result = "ok"
                elif field == "cas":
                    cas += 1
                    table.set_cas(item, cas)
                    result = "ok"
                else:
                    state = rng.choice([0, FETCHED, STALE, TOKEN_SENT, FETCHED | STALE])
                    table.set_state(item, state, int(clock.now))
                    result = "ok"
            elif what == "clear":
                op = ("clear",)
                scope.release()
                items = []
                table.clear()
                result = len(table)
            else:
                k = key()
                op = ("resident", k)
                result = (table.resident(k), table.slot_of(k), table.may_be_far(k))
            if rng.random() < 0.15:
                scope.release()
                items = []
            records.append((op, canon(result)))
            if n % 50 == 49:
                records.append((("state", n), _table_state(table)))
        scope.release()
        records.append((("state", "end"), _table_state(table)))
        cover.update(mgr.evacuator.stats())
        cover.pop("evac_busy_seconds")
        mgr.close()

    _hub.run(main)
    return records, cover


# -- stream: the heap alone ----------------------------------------------------------------


def stream_heap(seed: int) -> tuple[list, dict]:
    """runtime.heap.Heap's API directly: allocation, freeing, pins, retiring, resizing."""
    from runtime.heap import Heap
    from runtime.scope import DerefScope

    rng = random.Random(seed)
    records: list = []
    notes: list = []
    segsize = rng.choice([4096, 8192, 65536])
    heap = Heap(segsize * 24, segsize)
    heap.on_low_memory = lambda: notes.append("low")
    heap.on_space = lambda: notes.append("space")
    owners = [heap.register(object()) for _ in range(3)]
    live: dict = {}  # (seg id, offset) -> payload bytes
    scopes: list = []
    slot = 0
    for _ in range(3000):
        r = rng.random()
        if r < 0.45:
            size = rng.choice([0, 1, 7, 8, 24, 100, 1000, segsize // 2, segsize - 8, segsize * 2])
            owner = rng.choice(owners)
            evac = rng.random() < 0.15
            slot += 1
            op = ("alloc", size, owner, slot, evac)
            loc = heap.alloc(size, owner, slot, evac)
            result = loc
            if loc is not None:
                payload = _value(rng, size)
                heap.view(loc[0], loc[1], size)[:] = payload
                live[loc] = payload
        elif r < 0.7 and live:
            loc = rng.choice(sorted(live))
            op = ("free", loc)
            heap.free(*loc)
            del live[loc]
            result = None
        elif r < 0.78 and live:
            loc = rng.choice(sorted(live))
            seg = heap.table[loc[0]]
            op = ("read", loc)
            result = (
                bytes(heap.view(loc[0], loc[1], len(live[loc]))) == live[loc],
                heap.payload_size(*loc),
                seg.size_at(loc[1]),
                seg.slot_at(loc[1]),
            )
        elif r < 0.84 and heap.segments:
            seg = heap.segments[rng.choice(sorted(heap.segments))]
            op = ("pin", seg.id)
            scope = DerefScope()
            scope.pin(seg)
            if rng.random() < 0.5:
                scope.pin(seg)
            scopes.append(scope)
            result = (seg.pins, scope.pinned)
        elif r < 0.9 and scopes:
            scope = scopes.pop(rng.randrange(len(scopes)))
            op = ("release",)
            scope.release()
            result = None
        elif r < 0.93 and heap.fifo:
            seg = heap.segments.get(rng.choice(list(heap.fifo)))
            op = ("retire", seg.id if seg is not None else None)
            if seg is not None:
                doomed = seg.id
                heap.retire(seg)
                for loc in [loc for loc in live if loc[0] == doomed]:
                    del live[loc]  # its objects die with it
            result = None
        elif r < 0.96 and heap.segments:
            seg = heap.segments[rng.choice(sorted(heap.segments))]
            op = ("objects", seg.id)
            result = heap.objects(seg)
        else:
            units = rng.choice([3, 8, 16, 24, 40])
            op = ("resize", units)
            heap.resize(units * segsize)
            result = None
        state = (
            heap.stats(),
            list(heap.fifo),
            sorted(heap.segments),
            [None if s is None else s.id for s in heap.current],
            [None if s is None else s.id for s in heap.survivor],
            notes[:],
        )
        notes.clear()
        records.append((op, canon((result, state))))
    return records, {"allocs": heap.allocs, "segments_freed": heap.segments_freed}


# -- stream: the cuckoo filter ---------------------------------------------------------------


def stream_cuckoo(seed: int) -> tuple[list, dict]:
    """CuckooFilter: adds, discards and lookups through its growth."""
    from runtime.cuckoo import CuckooFilter

    rng = random.Random(seed)
    records: list = []
    f = CuckooFilter(rng.choice([64, 256, 4096]), seed=seed)
    keys: list[bytes] = []
    for n in range(4000):
        r = rng.random()
        if r < 0.5 or not keys:
            k = rng.randbytes(rng.randrange(1, 20))
            keys.append(k)
            op = ("add", k)
            result = f.add(k)
        elif r < 0.7:
            k = keys.pop(rng.randrange(len(keys)))
            op = ("discard", k)
            result = f.discard(k)
        elif r < 0.85:
            k = rng.choice(keys)
            op = ("contains", k)
            result = k in f
        else:
            k = rng.randbytes(8)
            op = ("contains-new", k)
            result = k in f
        if n % 100 == 99:
            result = (result, len(f), f.dropped, len(f.tables), f.nbytes)
        records.append((op, canon(result)))
    return records, {"len": len(f)}


# -- stream: the far protocol ------------------------------------------------------------------


def _random_frame(rng: random.Random) -> bytes:
    from protocol.far import HEADER, Op, Status, encode_frame

    r = rng.random()
    body = rng.randbytes(rng.choice([0, 1, 10, 100, 3000]))
    if r < 0.85:
        return encode_frame(
            rng.randrange(2**32),
            rng.choice(list(Op)),
            rng.randrange(5),
            body,
            rng.choice(list(Status)) if rng.random() < 0.5 else 0,
        )
    length = 12 + len(body)
    if r < 0.88:  # an unknown op
        return HEADER.pack(length, 1, 99, 0, 0, 0) + body
    if r < 0.91:  # a reserved field that is not 0
        return HEADER.pack(length, 1, 4, 0, 7, 0) + body
    if r < 0.94:  # an unknown status
        return HEADER.pack(length, 1, 4, 77, 0, 0) + body
    return rng.choice([b"\x05\x00\x00\x00", b"\xff\xff\xff\x7f"]) + body[:20]  # bad length


def stream_farproto(seed: int) -> tuple[list, dict]:
    """FrameReader on random frame streams; the body codecs on random bodies."""
    from protocol import far

    rng = random.Random(seed)
    records: list = []
    for conn in range(30):
        replies = rng.random() < 0.5
        reader = far.FrameReader(rng.choice([far.DEFAULT_MAX_FRAME, 2000]), replies=replies)
        data = b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 30)))
        pos = 0
        for nfeed, size in enumerate(chunk_sizes(rng, len(data))):
            chunk = data[pos : pos + size]
            pos += size
            reader.feed(chunk if rng.random() < 0.7 else bytearray(chunk))
            frames: list = []
            try:
                for frame in reader:
                    frames.append(tuple(frame))
            except far.FrameError as exc:
                frames.append(canon_error(exc))
            records.append((("feed", conn, nfeed, size), canon((frames, reader.buffered))))
    codecs = [
        ("name", lambda b: far.decode_name(b)),
        ("item", lambda b: far.decode_item(b)),
        ("write", lambda b: far.decode_write(b)),
        ("compute", lambda b: far.decode_compute(b)),
        ("hello", lambda b: far.decode_hello(b)),
        ("hello_reply", lambda b: far.decode_hello_reply(b)),
        ("construct", lambda b: far.decode_construct(b)),
        ("construct_reply", lambda b: far.decode_construct_reply(b)),
        ("stats_reply", lambda b: far.decode_stats_reply(b)),
        ("message", lambda b: far.decode_message(b)),
        ("names", lambda b: far.decode_names(b)),
        ("index", lambda b: far.decode_index(b)),
        ("scan", lambda b: far.decode_scan(b)),
        ("scan_reply", lambda b: far.decode_scan_reply(b)),
    ]
    ops = list(far.COMPUTE_OPS)
    for n in range(1500):
        key = rng.randbytes(rng.randrange(0, 30))
        value = rng.randbytes(rng.choice([0, 3, 50, 400]))
        flags, exptime, cas = rng.randrange(2**32), rng.randrange(2**32), rng.randrange(2**64)
        opname = rng.choice(ops)
        spec = far.COMPUTE_OPS[opname]
        fields = [rng.randrange(2**32) for _ in spec.args.format[1:]]
        data = value if spec.data else b""
        encoded = [
            far.encode_name(key),
            far.encode_item(value, flags, exptime, cas),
            far.encode_write(key, value, flags, exptime, cas),
            far.encode_compute(opname, key, far.encode_compute_args(opname, *fields, data=data)),
            far.encode_hello(rng.randrange(3), key),
            far.encode_names([key, value[:10]]),
            far.encode_scan(cas, flags, exptime),
            far.encode_scan_reply(cas, [(key, flags, exptime, cas, value), (b"", 0, 0, 0, key)]),
        ]
        body = rng.choice(encoded)
        cut = rng.random()
        if cut < 0.3:
            body = body[: rng.randrange(len(body) + 1)]
        elif cut < 0.4:
            body = rng.randbytes(rng.randrange(0, 40))
        name, decode = rng.choice(codecs)
        try:
            result = decode(body)
        except (far.FrameError, ValueError) as exc:
            result = canon_error(exc)
        args = None
        try:
            args = far.decode_compute_args(opname, far.encode_compute_args(opname, *fields))
        except (far.FrameError, ValueError) as exc:
            args = canon_error(exc)
        records.append((("decode", n, name, len(body)), canon((result, args, encoded))))
    return records, {}


# -- stream: the runtime with a far node ---------------------------------------------------------


def stream_runtime(seed: int, node) -> tuple[list, dict]:
    """RemHashTable over a real far node: items go far and come back; values compared."""
    sys.path.append(os.path.join(_HERE, "runtime"))
    from farharness import with_runtime

    from runtime.hashtable import RemHashTable
    from runtime.scope import DerefScope

    rng = random.Random(seed)
    records: list = []
    future = 4_000_000_000  # an absolute exptime (2096) neither side will see pass
    model: dict[bytes, bool] = {}  # key -> holds a live item (what delete must find)

    def main(mgr) -> dict:
        table = RemHashTable(mgr, expected_far_items=4096)
        keys = [b"r%d" % i for i in range(400)]
        cas = 0

        def key() -> bytes:
            return rng.choice(keys)

        def read(item) -> object:
            if item is None:
                return None
            return canon((item.flags, item.exptime, item.cas, bytes(item.value)))

        for n in range(2000):
            r = rng.random()
            with DerefScope() as scope:
                if r < 0.35:
                    k = key()
                    size = rng.choice([100, 2000, 5000, 9000, 16000])
                    if rng.random() < 0.01:
                        size = 100_000  # a segment of its own
                    exptime = rng.choice([0, 0, 0, future, 1])
                    cas += 1
                    op = ("set", k, size, exptime, cas)
                    table.set(k, _value(rng, rng.randint(1, size)), cas % 7, exptime, cas)
                    model[k] = exptime != 1
                    result = None
                elif r < 0.65:
                    k = key()
                    op = ("get", k)
                    result = read(table.get(scope, k))
                elif r < 0.72:
                    ks = [key() for _ in range(rng.randrange(2, 8))]
                    op = ("get_many", ks)
                    result = [read(i) for i in table.get_many(scope, ks)]
                elif r < 0.8:
                    k = key()
                    op = ("delete", k)
                    found = table.delete(k)
                    result = found if model.get(k) else "not compared"
                    model[k] = False
                elif r < 0.95:
                    k = key()
                    suffix = _value(rng, rng.randrange(1, 300))
                    cas += 1
                    op = ("append", k, len(suffix), cas)
                    if not table.resident(k) and table.may_be_far(k):
                        status, _, _ = table.offload(k, "append", cas, data=suffix)
                        result = "stored" if status == 0 else "not stored"
                    else:
                        item = table.get(scope, k)
                        if item is None:
                            result = "not stored"
                        else:
                            value = bytes(item.value) + suffix
                            flags, exptime = item.flags, item.exptime
                            scope.release()  # never wait for memory holding pins
                            table.set(k, value, flags, exptime, cas)
                            result = "stored"
                else:
                    ks = [key() for _ in range(rng.randrange(1, 10))]
                    op = ("prefetch", ks)
                    table.prefetch(ks)  # how many it sends depends on residency
                    result = None
            records.append((op, result))
            if n % 250 == 249:
                with DerefScope() as scope:
                    values = [read(i) for i in table.get_many(scope, keys)]
                records.append((("read all", n), values))
        with DerefScope() as scope:
            records.append((("read all", "end"), [read(i) for i in table.get_many(scope, keys)]))
        out = dict(mgr.stats())
        out.update(("table_" + k, v) for k, v in table.stats.items())
        return out

    stats = with_runtime(node, 1 << 20, main, timeout=20, segment_size=65536)
    cover = {
        k: stats[k]
        for k in ("evacuations", "clean_drops", "far_reads", "table_far_hits", "offloads")
    }
    return records, cover


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the streams asked for and pickle their results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to pickle the results")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--streams", default=",".join(STREAMS))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    streams = args.streams.split(",")

    from kvcache import compiled

    status = compiled.status()
    files = {name: sys.modules[name].__file__ for name in status}
    files["farserver"] = __import__("farserver").__file__
    records: dict = {}
    coverage: dict = {}
    timing: dict = {}
    node = None
    if "runtime" in streams or "dispatch_far" in streams:
        from runtime.farprocess import FarProcess

        node = FarProcess()  # 127.0.0.1, an ephemeral port; it imports what we import
    try:
        for name in streams:
            fn = globals()["stream_" + name]
            for seed in seeds:
                t0 = time.perf_counter()
                if name in ("runtime", "dispatch_far"):
                    recs, cover = fn(seed, node)
                else:
                    recs, cover = fn(seed)
                timing[(name, seed)] = time.perf_counter() - t0
                records[(name, seed)] = recs
                coverage[(name, seed)] = cover
    finally:
        if node is not None:
            node.stop()
    with open(args.out, "wb") as f:
        pickle.dump(
            {
                "status": status,
                "files": files,
                "records": records,
                "coverage": coverage,
                "timing": timing,
            },
            f,
        )


if __name__ == "__main__":
    main()
