"""The null server: the ceiling of any Python memcached server on uvloop.

An `asyncio.Protocol` in plain Python on a uvloop loop that speaks just
enough of memcached's text protocol for the benchmark workloads (`get k1
... kN`, `set k f e n [noreply]` and its data block, `version`) and does the
least a server can: one dict lookup per key, the whole reply line of a
stored item kept preformatted (`VALUE k f n\\r\\n<value>\\r\\n`), one
`transport.write` per read. No expiry, no cas, no limits, no error replies
beyond `ERROR`. loadtest/bench_memcached.py runs it beside memcached and
kvcache under the same load: kvcache, which does all of that and more, is
measured against it (target >= 0.95x).

Run: python -m loadtest.nullserver [-p PORT] (prints `nullserver listening on 127.0.0.1:PORT`)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop

__all__ = ["NullProtocol", "main"]

END = b"END\r\n"
STORED = b"STORED\r\n"


class NullProtocol(asyncio.Protocol):
    """One connection: parse, look up, reply."""

    def __init__(self, items: dict[bytes, bytes]):
        self.items = items  # key -> preformatted VALUE line + value + \r\n
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        items = self.items
        out = []
        pos = 0
        n = len(buf)
        while pos < n:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos : nl - 1 if nl > pos and buf[nl - 1] == 13 else nl]
            toks = line.split(b" ")
            cmd = toks[0]
            if cmd == b"get":
                get = items.get
                for key in toks[1:]:
                    hit = get(key)
                    if hit is not None:
                        out.append(hit)
                out.append(END)
                pos = nl + 1
            elif cmd == b"set" and len(toks) >= 5:
                size = int(toks[4])
                end = nl + 1 + size + 2
                if end > n:
                    break  # the data block is not all here yet
                value = buf[nl + 1 : end - 2]
                items[toks[1]] = b"VALUE %s %s %d\r\n%s\r\n" % (toks[1], toks[2], size, value)
                if toks[-1] != b"noreply":
                    out.append(STORED)
                pos = end
            elif cmd == b"version":
                out.append(b"VERSION nullserver\r\n")
                pos = nl + 1
            else:
                out.append(b"ERROR\r\n")
                pos = nl + 1
        self.buf = buf[pos:] if pos < n else b""
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    items: dict[bytes, bytes] = {}
    server = await loop.create_server(lambda: NullProtocol(items), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"nullserver listening on {host}:{bound}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.nullserver", description=__doc__.splitlines()[0]
    )
    ap.add_argument("-p", "--port", type=int, default=11211)
    ap.add_argument("-l", "--listen", default="127.0.0.1")
    args = ap.parse_args(argv)
    try:
        uvloop.run(serve(args.listen, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
