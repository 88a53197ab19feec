"""The paging baseline (Fastswap-like): the same data in 4 KiB pages, swapped whole.

    address space  [ hash region: open-addressing slots of 16 B | array: 8 KiB elements ]
                     slot = 12-byte key + u32 value, 256 per page, load <= 0.75,
                     linear probing from crc32(key) % n_slots
    far node       one far Array of 4 KiB elements (a page each), over the same
                   wire format (protocol.far) and TCP loopback as the far mode
    local          `nframes` page frames in one bytearray, a page table
                   (array 'i': page -> frame, -1 = not present), per-frame page,
                   CLOCK reference bit and dirty bit

- Every access goes through the page table; a miss is a page fault: CLOCK
  picks a victim (a dirty victim is written back whole), the page is read
  from the far node, and the *whole process* waits: the far connection is a
  blocking socket, so no other green thread runs until the reply is in
  (the kernel spinning on the fault). Many green threads cannot hide it.
- Readahead as Linux does: a fault on the page right after the previous
  fault's run doubles the window (1, 2, 4, 8 pages, page-cluster 3); a random
  fault resets it. Readahead pages come in with their reference bit clear.
  Every page of one fault (and the victims' write-backs) goes out in one
  batch, one round trip.
- Fair by construction: same data and checksums, same far node process and
  frame format, same per-request compute; loading writes pages straight to
  the far node and the page cache starts cold, as the far mode's heap does.
"""

from __future__ import annotations

import socket
import struct
import sys
import zlib
from array import array

from protocol.far import (
    VERSION,
    DsType,
    FrameReader,
    Op,
    Status,
    decode_construct_reply,
    decode_item,
    decode_message,
    encode_construct,
    encode_frame,
    encode_hello,
    encode_index,
    encode_name,
    encode_write,
)

__all__ = ["PAGE", "BlockingFar", "PagedArray", "PagedHashTable", "PagedMemory"]

PAGE = 4096
SLOT = 16  # 12-byte key + u32 value
KEY = 12
_U32 = struct.Struct("<I")
_EMPTY = bytes(KEY)


class BlockingFar:
    """A blocking connection to a far node: requests sent in a batch, then waited for."""

    def __init__(self, host: str, port: int, secret: bytes = b"", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(replies=True)
        self._next_id = 1
        self.bytes_sent = 0  # wire bytes, frame headers included
        self.bytes_received = 0
        self.round_trips = 0  # batches waited for (each blocks the process)
        ((status, body),) = self.batch([(Op.HELLO, 0, encode_hello(VERSION, secret))])
        if status != Status.OK:
            raise ConnectionError(f"far node refused HELLO: {decode_message(body)}")

    def batch(self, requests: list[tuple[int, int, bytes]]) -> list[tuple[int, bytes]]:
        """Send every request, block until all replies are in: [(status, body)] in order."""
        first = self._next_id
        frames = [
            encode_frame(first + n, op, ds, body) for n, (op, ds, body) in enumerate(requests)
        ]
        self._next_id = first + len(requests)
        out = b"".join(frames)
        self.sock.sendall(out)
        self.bytes_sent += len(out)
        self.round_trips += 1
        replies: dict[int, tuple[int, bytes]] = {}
        reader = self.reader
        while len(replies) < len(requests):
            frame = reader.next()
            if frame is None:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("far node closed the connection")
                self.bytes_received += len(data)
                reader.feed(data)
                continue
            replies[frame.req_id - first] = (frame.status, frame.body)
        return [replies[n] for n in range(len(requests))]

    def construct(self, kind: int, params: dict) -> int:
        """Create a data structure on the node; its id."""
        ((status, body),) = self.batch([(Op.CONSTRUCT, 0, encode_construct(kind, params))])
        if status != Status.OK:
            raise ConnectionError(f"far node refused CONSTRUCT: {decode_message(body)}")
        return decode_construct_reply(body)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class PagedMemory:
    """A flat address space of 4 KiB pages cached in `nframes` local frames (CLOCK)."""

    def __init__(self, far: BlockingFar, n_pages: int, nframes: int, readahead_max: int = 8):
        if nframes < readahead_max + 2:
            raise ValueError(f"{nframes} frames: need at least {readahead_max + 2}")
        self.far = far
        self.n_pages = n_pages
        self.nframes = nframes
        self.readahead_max = readahead_max  # pages per fault at most (Linux page-cluster 3)
        self.ds = far.construct(DsType.ARRAY, {"elem_size": PAGE, "length": n_pages})
        self.frames = bytearray(nframes * PAGE)
        self.view = memoryview(self.frames)
        self.page_table = array("i", [-1]) * n_pages  # page -> frame, -1: not present
        self.frame_page = array("i", [-1]) * nframes  # frame -> page, -1: unused
        self.ref = bytearray(nframes)  # CLOCK reference bits
        self.dirty = bytearray(nframes)
        self.hand = 0
        self.unused = 0  # frames 0..unused-1 have held a page
        self.expect = -1  # the page after the last fault's run (sequential detection)
        self.window = 1  # current readahead window, pages
        self.faults = 0  # fault events (each a blocking round trip)
        self.pages_in = 0
        self.pages_out = 0  # dirty pages written back
        self.readahead = 0  # pages brought in beyond the faulting one

    def local_bytes(self) -> int:
        """Frames + page table + per-frame metadata, as allocated (sys.getsizeof)."""
        return sum(
            sys.getsizeof(x)
            for x in (self.frames, self.page_table, self.frame_page, self.ref, self.dirty)
        )

    def load(self, pages, window: int = 256) -> None:
        """Write (page, 4 KiB) pairs straight to the far node, `window` per round trip."""
        far, ds = self.far, self.ds
        batch = []
        for page, data in pages:
            batch.append((Op.WRITE, ds, encode_write(encode_index(page), bytes(data))))
            if len(batch) == window:
                self._check_all(far.batch(batch))
                batch = []
        if batch:
            self._check_all(far.batch(batch))

    @staticmethod
    def _check_all(replies: list[tuple[int, bytes]]) -> None:
        for status, body in replies:
            if status != Status.OK:
                raise ConnectionError(f"far page write failed: {decode_message(body)}")

    def frame(self, page: int) -> int:
        """Byte offset of `page` in the frames, faulting it in if need be."""
        f = self.page_table[page]
        if f < 0:
            return self.fault(page) * PAGE
        self.ref[f] = 1
        return f * PAGE

    def fault(self, page: int) -> int:
        """Bring `page` (and readahead) in, blocking the process; its frame."""
        self.faults += 1
        if page == self.expect:
            self.window = min(self.window * 2, self.readahead_max)
        else:
            self.window = 1
        pt = self.page_table
        end = min(page + self.window, self.n_pages)
        want = [p for p in range(page, end) if pt[p] < 0]
        self.expect = end
        writes: list[tuple[int, int, bytes]] = []
        taken: set[int] = set()
        victims = [self._victim(writes, taken) for _ in want]
        reads = [(Op.READ, self.ds, encode_name(encode_index(p))) for p in want]
        replies = self.far.batch(writes + reads)
        self._check_all(replies[: len(writes)])
        view = self.view
        for p, f, (status, body) in zip(want, victims, replies[len(writes) :], strict=True):
            if status != Status.OK:
                raise ConnectionError(f"page {p} read failed: {Status(status).name}")
            data = decode_item(body)[3]
            view[f * PAGE : (f + 1) * PAGE] = data
            pt[p] = f
            self.frame_page[f] = p
            self.ref[f] = 1 if p == page else 0
            self.dirty[f] = 0
        self.pages_in += len(want)
        self.readahead += len(want) - 1
        return victims[0]

    def _victim(self, writes: list, taken: set[int]) -> int:
        """A frame to reuse, not in `taken`: an unused one, else CLOCK's.

        Queues a dirty victim's write-back on `writes`; adds the frame to `taken`.
        """
        if self.unused < self.nframes:
            self.unused += 1
            taken.add(self.unused - 1)
            return self.unused - 1
        ref, n = self.ref, self.nframes
        hand = self.hand
        while ref[hand] or hand in taken:
            ref[hand] = 0
            hand = hand + 1 if hand + 1 < n else 0
        f = hand
        self.hand = hand + 1 if hand + 1 < n else 0
        old = self.frame_page[f]
        self.page_table[old] = -1
        self.frame_page[f] = -1
        if self.dirty[f]:
            data = bytes(self.view[f * PAGE : (f + 1) * PAGE])
            writes.append((Op.WRITE, self.ds, encode_write(encode_index(old), data)))
            self.pages_out += 1
            self.dirty[f] = 0
        taken.add(f)
        return f

    def read(self, addr: int, size: int) -> bytes:
        """Copy `size` bytes from `addr` (faulting pages in, in order)."""
        out = []
        while size > 0:
            page, off = divmod(addr, PAGE)
            n = min(size, PAGE - off)
            base = self.frame(page)
            out.append(bytes(self.view[base + off : base + off + n]))
            addr += n
            size -= n
        return b"".join(out)

    def write(self, addr: int, data: bytes) -> None:
        """Store `data` at `addr`; the pages become dirty (written back whole on eviction)."""
        pos = 0
        while pos < len(data):
            page, off = divmod(addr + pos, PAGE)
            n = min(len(data) - pos, PAGE - off)
            base = self.frame(page)
            self.view[base + off : base + off + n] = data[pos : pos + n]
            self.dirty[base // PAGE] = 1
            pos += n

    def flush(self) -> None:
        """Write every dirty page back (they stay cached, clean)."""
        writes = []
        for f in range(self.unused):
            if self.dirty[f] and self.frame_page[f] >= 0:
                data = bytes(self.view[f * PAGE : (f + 1) * PAGE])
                writes.append(
                    (Op.WRITE, self.ds, encode_write(encode_index(self.frame_page[f]), data))
                )
                self.dirty[f] = 0
                self.pages_out += 1
        if writes:
            self._check_all(self.far.batch(writes))


def slots_for(n_keys: int, load: float = 0.75) -> int:
    """Slots of an open-addressing table for n_keys at most `load` full, whole pages."""
    per_page = PAGE // SLOT
    pages = -(-int(n_keys / load + 1) // per_page)
    return pages * per_page


class PagedHashTable:
    """12-byte key -> u32 in an open-addressing table at address 0 of a PagedMemory."""

    def __init__(self, mem: PagedMemory, n_slots: int):
        self.mem = mem
        self.n_slots = n_slots
        self.lookups = 0
        self.missed = 0  # lookups that faulted at least once

    @staticmethod
    def build(items, n_slots: int) -> bytearray:
        """The table's bytes for (key, value) items (loaded far as pages)."""
        region = bytearray(n_slots * SLOT)
        crc = zlib.crc32
        pack = _U32.pack_into
        for key, value in items:
            if len(key) != KEY:
                raise ValueError("keys are 12 bytes")
            s = crc(key) % n_slots
            while region[s * SLOT : s * SLOT + KEY] != _EMPTY:
                s = s + 1 if s + 1 < n_slots else 0
            off = s * SLOT
            region[off : off + KEY] = key
            pack(region, off + KEY, value)
        return region

    @property
    def pages(self) -> int:
        """Pages the table spans."""
        return self.n_slots * SLOT // PAGE

    def lookup_sum(self, keys: list[bytes]) -> int:
        """Sum of the keys' values (KeyError for a missing key); faults block."""
        mem = self.mem
        pt, ref, frames = mem.page_table, mem.ref, mem.frames
        n_slots = self.n_slots
        crc = zlib.crc32
        unpack = _U32.unpack_from
        total = 0
        for key in keys:
            s = crc(key) % n_slots
            before = mem.faults
            while True:
                addr = s * SLOT
                page = addr >> 12
                f = pt[page]
                if f < 0:
                    f = mem.fault(page)
                else:
                    ref[f] = 1
                off = (f << 12) | (addr & 4095)
                k = frames[off : off + KEY]
                if k == key:
                    total += unpack(frames, off + KEY)[0]
                    break
                if k == _EMPTY:
                    raise KeyError(key)
                s = s + 1 if s + 1 < n_slots else 0
            if mem.faults != before:
                self.missed += 1
        self.lookups += len(keys)
        return total


class PagedArray:
    """Fixed-size elements laid out from byte `base` of a PagedMemory."""

    def __init__(self, mem: PagedMemory, base: int, elem_size: int, length: int):
        if base % PAGE or elem_size % PAGE:
            raise ValueError("elements are whole, page-aligned pages")
        self.mem = mem
        self.base = base
        self.elem_size = elem_size
        self.length = length
        self.reads = 0
        self.missed = 0  # reads that faulted at least once

    def read(self, i: int) -> bytes:
        """Element i's bytes (its pages faulted in, in order)."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        mem = self.mem
        before = mem.faults
        data = mem.read(self.base + i * self.elem_size, self.elem_size)
        self.reads += 1
        if mem.faults != before:
            self.missed += 1
        return data
