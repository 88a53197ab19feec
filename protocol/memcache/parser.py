"""Incremental, sans-I/O framing of memcached's text protocol (server side).

    feed(bytes) --> [ line? -> tokens -> command table -> Request ]
                    [ data block of N+2 bytes for set/ms        ]
                    [ swallow N+2 bytes after a rejected value  ]
    next_event() -> Request | NEED_DATA, or raises a ProtocolError

Invariants:
- Any chunking of the input gives the same events and errors (h11's rule),
  but for memcached's one chunking-dependent rule, below: a read that ends
  inside a line of more than `max_line` bytes closes the connection.
- A raised ProtocolError has consumed its offending input; the next call
  continues with the next command, as memcached does after an error.
- Memory is bounded: a partial line is at most `max_line` bytes (2048) once
  a read is parsed, a complete one at most `max_read` (16384), except
  get/gets/gat/gats lines, at most `max_get_line` (1 MiB); a data block of
  N bytes is held once (N + 2 bytes); swallowed bytes are never held. Scans
  never restart from the start of a partial line.

Long lines, as memcached 1.6.18 treats them (try_read_command_ascii): it
reads into a 16384-byte buffer and processes every complete line in it,
whatever its length; when a read leaves more than 2048 bytes without a
newline it closes the connection without a word, unless they start with
"get " or "gets " (after at most 100 spaces): those it reads on. So here: a
complete line is parsed if it fits `max_read` with its newline; when
next_event() is about to say NEED_DATA (the read is used up) with a partial
line over `max_line` bytes, or a complete line is over `max_read`, the
parser raises ClientError("line too long", noreply=True, close=True) (no
reply line) and ignores all further input, unless the line is a get, gets,
gat or gats line within `max_get_line` (gat/gats: kvcache's leniency).
"""

from __future__ import annotations

from typing import TypeVar

import cython

from protocol.errors import ClientError, CommandError, ProtocolError
from protocol.memcache import admin, meta, text
from protocol.memcache.requests import NEED_DATA, BinaryProtocol, Get, Request, Store
from protocol.memcache.text import ITEM_HEADER, KEY_MAX_LENGTH

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memchr, memcmp

__all__ = ["DEFAULT_ITEM_SIZE_MAX", "Parser"]

DEFAULT_ITEM_SIZE_MAX = 1024 * 1024  # memcached -I default
MAX_LINE = 2048  # memcached: a read leaving more than this without a newline -> close
MAX_READ = 16384  # memcached's read buffer: no complete line (with \n) is longer
MAX_GET_LINE = 1024 * 1024  # multi-get lines may be long; bounded here
MAX_LEADING_SPACES = 100  # memcached reads on a long get line after at most these
LARGE_BLOCK = 64 * 1024  # data blocks above this are collected as chunks

KEY_MAX = cython.declare(cython.Py_ssize_t, KEY_MAX_LENGTH)
ITEM_HEADER_SIZE = cython.declare(cython.Py_ssize_t, ITEM_HEADER)  # text.item_too_large's
_COMMANDS = {**text.COMMANDS, **meta.COMMANDS, **admin.COMMANDS}
_Outcome = TypeVar("_Outcome", ProtocolError, Request)  # what a swallow reports
_LONG_LINE_PREFIXES = (b"get ", b"gets ", b"gat ", b"gats ")


def _is_get(buf: bytes, pos: cython.Py_ssize_t) -> cython.bint:
    """Does buf[pos:] start with `get `?"""
    if cython.compiled:
        return memcmp(PyBytes_AS_STRING(buf) + pos, b"get ", 4) == 0
    return buf.startswith(b"get ", pos)


def _get_keys(buf: bytes, i: cython.Py_ssize_t, end: cython.Py_ssize_t) -> list:
    """The keys of buf[i:end], one space apart, each 1..250 bytes; else None.

    Anything else (two spaces, a trailing one, a key too long) is left to the
    general path and its errors.
    """
    keys: list = []
    j: cython.Py_ssize_t
    while True:
        if cython.compiled:
            data = PyBytes_AS_STRING(buf)
            hit = cython.cast(cython.p_char, memchr(data + i, 32, end - i))
            j = end if hit == cython.NULL else hit - data
        else:
            j = buf.find(b" ", i, end)
            if j < 0:
                j = end
        if j == i or j - i > KEY_MAX:
            return None
        if cython.compiled:
            keys.append(PyBytes_FromStringAndSize(data + i, j - i))
        else:
            keys.append(buf[i:j])
        if j == end:
            return keys
        i = j + 1


def _get(keys: list) -> Get:
    """The Get event of a plain `get`."""
    ev: Get = Get.__new__(Get)
    ev.cmd = "get"
    ev.keys = keys
    ev.cas = False
    ev.exptime = None
    return ev


def _is_set(buf: bytes, pos: cython.Py_ssize_t) -> cython.bint:
    """Does buf[pos:] start with `set `?"""
    if cython.compiled:
        return memcmp(PyBytes_AS_STRING(buf) + pos, b"set ", 4) == 0
    return buf.startswith(b"set ", pos)


def _is_noreply(buf: bytes, i: cython.Py_ssize_t) -> cython.bint:
    """Is buf[i:i+8] ` noreply`?"""
    if cython.compiled:
        return memcmp(PyBytes_AS_STRING(buf) + i, b" noreply", 8) == 0
    return buf.startswith(b" noreply", i)


def _has_nul(data: object) -> cython.bint:
    """Does `data` hold a NUL byte? (`b"\\0" in data` first tries the byte as an int,
    which raises and clears a TypeError: ~1,800 instructions a call.)"""
    if cython.compiled and isinstance(data, bytes):
        return memchr(PyBytes_AS_STRING(data), 0, len(data)) != cython.NULL
    if isinstance(data, memoryview):
        data = data.tobytes()
    return data.find(b"\0") >= 0


class Parser:
    """Turns a client's byte stream into request events, incrementally."""

    def __init__(
        self,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
        max_line: int = MAX_LINE,
        max_get_line: int = MAX_GET_LINE,
        max_read: int = MAX_READ,
    ):
        self.item_size_max = item_size_max  # bytes; larger items are refused
        self.max_line = max_line  # bytes a read may leave of a partial line
        self.max_read = max_read  # bytes of a complete line, its newline included
        self.max_get_line = max_get_line  # bytes, for get/gets/gat/gats lines
        self._buf: bytes | bytearray = b""  # unconsumed input from _pos on
        self._pos = 0  # first unconsumed byte of _buf
        self._scan = 0  # _buf holds no newline in [_pos, _scan)
        self._pending: Request | None = None  # store waiting for its block
        self._need = 0  # bytes of that block, \r\n included
        self._swallow = 0  # bytes still to discard
        self._started = False  # saw the connection's first byte
        self._closed = False  # fatal error: ignore all further input
        self._slow = True  # take _next_slow(): any state but "between lines"
        self._parts: list[bytes] | None = None  # a large block's chunks, joined once
        self._parts_len = 0  # bytes in _parts
        self._nul = False  # the buffer holds a NUL byte: lines take the slow path

    # -- input -----------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Never parses; call next_event() after."""
        if self._closed or not data:
            return
        if self._parts is not None:
            data = bytes(data)
            self._parts.append(data)
            self._parts_len += len(data)
            if _has_nul(data):
                self._nul = True
            return
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data = data if type(data) is bytes else bytes(data)
            self._pos = self._scan = 0
            self._nul = _has_nul(data)
            if self._nul:
                self._slow = True
            return
        if _has_nul(data):
            self._nul = self._slow = True
        if type(buf) is bytes:
            nbuf = bytearray(memoryview(buf)[pos:])
            self._scan -= pos
            self._pos = 0
            nbuf += data
            self._buf = nbuf
            self._slow = True  # the fast path reads bytes buffers only
            return
        if pos > 65536 and pos > len(buf) // 2:
            del buf[:pos]  # O(1) front deletion in CPython's bytearray
            self._scan -= pos
            self._pos = 0
        buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (for bounded-memory checks)."""
        return len(self._buf) - self._pos + self._parts_len

    @property
    def closed(self) -> bool:
        """True after a fatal error: the connection is to be closed."""
        return self._closed

    # -- events ----------------------------------------------------------

    def next_event(self) -> object:
        """The next request, or NEED_DATA; raises a ProtocolError for bad input."""
        if self._slow:
            return self._next_slow()
        # Fast path: a complete, short line at _pos of a bytes buffer (the
        # common case: a read holding whole pipelined requests).
        buf: bytes = self._buf
        pos: cython.Py_ssize_t = self._pos
        nl: cython.Py_ssize_t
        if pos >= len(buf):  # the read is used up (what _next_slow would answer, no call)
            return NEED_DATA
        if cython.compiled:
            data = PyBytes_AS_STRING(buf)
            hit = cython.cast(cython.p_char, memchr(data + pos, 10, len(buf) - pos))
            nl = -1 if hit == cython.NULL else hit - data
        else:
            nl = buf.find(b"\n", pos)
        if nl < 0 or nl - pos > self.max_line:
            return self._next_slow()
        self._pos = nl + 1
        if nl - pos > 1 and buf[nl - 1] == 13:
            nl -= 1
        if nl - pos > 4 and _is_get(buf, pos):  # the hot path: `get <key> ...`
            keys = _get_keys(buf, pos + 4, nl)
            if keys is not None:
                return _get(keys)
        if nl - pos > 10 and _is_set(buf, pos):  # `set <key> <f> <e> <n>` and its block
            ev = self._fast_set(buf, pos, nl)
            if ev is not None:
                return ev
        return self._dispatch(buf[pos:nl].split(b" "))

    def _fast_set(self, buf: bytes, pos: cython.Py_ssize_t, end: cython.Py_ssize_t) -> object:
        """A plain `set` line whose data block is all here, as a Store; None otherwise.

        Plain: one space between tokens, a key of 1..250 bytes, numbers of 1..9
        digits, then nothing or ` noreply`, an item that is not too large and
        a block that ends in \\r\\n. Anything else (and so every error) is left
        to the general path, which parses the line again from its tokens.
        """
        i: cython.Py_ssize_t = pos + 4
        k0: cython.Py_ssize_t = i
        while i < end and buf[i] != 32:
            i += 1
        klen: cython.Py_ssize_t = i - k0
        if klen == 0 or klen > KEY_MAX:
            return None
        nums = cython.declare(cython.longlong[3])
        n: cython.int
        start: cython.Py_ssize_t
        v: cython.longlong
        c: cython.int
        for n in range(3):
            if i >= end or buf[i] != 32:
                return None
            i += 1
            start = i
            v = 0
            while i < end:
                c = buf[i]
                if c < 48 or c > 57:
                    break
                v = v * 10 + (c - 48)
                i += 1
            if i == start or i - start > 9:
                return None
            nums[n] = v
        noreply: cython.bint = False
        if i < end:
            if end - i == 8 and _is_noreply(buf, i):
                noreply = True
            else:
                return None
        flags: cython.longlong = nums[0]
        vlen: cython.Py_ssize_t = nums[2]
        if ITEM_HEADER_SIZE + klen + 3 + vlen + (4 if flags else 0) > self.item_size_max:
            return None  # too large: the general path swallows the block
        block: cython.Py_ssize_t = self._pos
        if len(buf) - block < vlen + 2 or buf[block + vlen] != 13 or buf[block + vlen + 1] != 10:
            return None  # not all here yet, or a bad data chunk: the general path's
        ev: Store = Store.__new__(Store)
        ev.cmd = "set"
        ev.key = buf[k0 : k0 + klen]
        ev.flags = flags
        ev.exptime = nums[1]
        ev.value = buf[block : block + vlen]
        ev.cas_unique = None
        ev.noreply = noreply
        self._pos = block + vlen + 2
        return ev

    def _dispatch(self, toks: list[bytes]) -> object:  # a Request or NEED_DATA
        if b"" in toks:
            toks = [t for t in toks if t]
            if not toks:
                raise CommandError()
        handler = _COMMANDS.get(toks[0])
        if handler is None:
            if toks[-1].startswith(b"HTTP/"):
                self._close()  # memcached closes on an HTTP request line, silently
                raise CommandError(noreply=True, close=True)
            raise CommandError()
        req = handler(self, toks)
        if req is None:  # a store: its data block follows
            return self._read_block()
        return req

    def _next_slow(self) -> object:  # a Request or NEED_DATA
        """next_event() outside the fast path: blocks, swallowing, partial lines."""
        if self._pending is not None:
            return self._read_block()
        if self._swallow:
            if not self._do_swallow():
                return NEED_DATA
        buf = self._buf
        pos = self._pos
        if pos >= len(buf) or self._closed:
            # the fast path reads bytes buffers only: a used-up bytearray (a line that
            # two reads completed) stays on this path until feed() replaces it
            self._slow = self._closed or not self._started or type(buf) is not bytes
            return NEED_DATA
        if not self._started:
            self._started = True
            if buf[pos] == 0x80:
                self._close()
                return BinaryProtocol()
        nl = buf.find(b"\n", self._scan if self._scan > pos else pos)
        if nl < 0:
            self._scan = len(buf)
            self._slow = True
            if len(buf) - pos > self.max_line:  # the read is used up inside a long line
                self._check_long_line(buf, pos, len(buf))
            return NEED_DATA
        self._slow = self._nul or type(buf) is not bytes
        if nl + 1 - pos > self.max_read:  # memcached's buffer filled before its newline
            self._check_long_line(buf, pos, nl + 1)
        end = nl
        if end - pos > 1 and buf[end - 1] == 13:
            end -= 1
        line = buf[pos:end]
        self._pos = nl + 1
        if type(line) is not bytes:
            line = bytes(line)
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]  # memcached reads a command line up to its first NUL
        return self._dispatch(line.split(b" "))

    def __iter__(self):
        """Yield events until NEED_DATA; errors propagate (then iterate again)."""
        while True:
            ev = self.next_event()
            if ev is NEED_DATA:
                return
            yield ev

    # -- helpers for the command tables ------------------------------------

    def expect_block(self, req: Request, nbytes: int) -> None:
        """The data block of `nbytes` bytes (plus \\r\\n) belongs to `req`."""
        self._pending = req
        self._need = nbytes + 2
        self._slow = True
        if nbytes > LARGE_BLOCK and len(self._buf) - self._pos < nbytes + 2:
            # Collect the chunks and join them once: linear in the value's size.
            self._parts = [bytes(self._buf[self._pos :])]
            self._parts_len = len(self._parts[0])
            self._buf = b""
            self._pos = self._scan = 0

    def swallow(self, nbytes: int, what: _Outcome) -> _Outcome:
        """Discard the next `nbytes` bytes (a refused value); `what` reports it."""
        self._swallow = nbytes
        self._slow = True
        return what

    # -- internals ---------------------------------------------------------

    def _read_block(self) -> object:  # a Request or NEED_DATA
        need = self._need
        if self._parts is not None:
            if self._parts_len < need:
                return NEED_DATA
            self._buf = b"".join(self._parts)
            self._pos = self._scan = 0
            self._parts = None
            self._parts_len = 0
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < need:
            return NEED_DATA
        req = self._pending
        self._pending = None
        self._slow = self._nul or type(buf) is not bytes
        end = pos + need
        self._pos = end
        if buf[end - 2] != 13 or buf[end - 1] != 10:
            raise ClientError("bad data chunk", noreply=getattr(req, "noreply", False))
        if type(buf) is bytes:
            data = buf[pos : end - 2]
        else:
            with memoryview(buf) as mv:
                data = bytes(mv[pos : end - 2])
        if req.cmd == "ms":
            req.data = data
        else:
            req.value = data
        return req

    def _do_swallow(self) -> bool:
        avail = len(self._buf) - self._pos
        if avail < self._swallow:
            self._swallow -= avail
            self._buf = b""
            self._pos = self._scan = 0
            return False
        self._pos += self._swallow
        self._swallow = 0
        return True

    def _check_long_line(self, buf: bytes | bytearray, pos: int, end: int) -> None:
        """A line of `end - pos` bytes is too long, unless a get line: close silently."""
        head = bytes(buf[pos : pos + MAX_LEADING_SPACES + 6])
        text = head.lstrip(b" ")
        if (
            len(head) - len(text) <= MAX_LEADING_SPACES
            and text.startswith(_LONG_LINE_PREFIXES)
            and end - pos <= self.max_get_line
        ):
            return
        self._close()
        raise ClientError("line too long", noreply=True, close=True)  # memcached says nothing

    def _close(self) -> None:
        self._closed = True
        self._slow = True
        self._buf = b""
        self._pos = self._scan = 0
        self._pending = None
        self._swallow = 0
        self._parts = None
        self._parts_len = 0
