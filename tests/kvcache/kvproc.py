"""A real kvcache server process on an ephemeral 127.0.0.1 port, for tests."""

from __future__ import annotations

import re
import sys

from oracle import Proc, talk

__all__ = ["KvCache", "converse", "exchange", "normalize"]


class KvCache(Proc):
    """`python -m kvcache -p 0 -l 127.0.0.1 *args`, stopped by PID."""

    def __init__(self, *args: str, timeout: float = 20.0, new_session: bool = False):
        cmd = [sys.executable, "-m", "kvcache", "-p", "0", "-l", "127.0.0.1", *args]
        super().__init__(cmd, timeout=timeout, new_session=new_session)


def exchange(port: int, data: bytes, quiet: float = 0.3, limit: float = 10.0) -> tuple[bytes, bool]:
    """Send `data` on a new connection; (everything received, whether it closed)."""
    return talk(port, data, quiet, limit)


def normalize(data: bytes) -> bytes:
    """Blank out what may differ: cas uniques and version strings."""
    data = re.sub(rb"(VALUE \S+ \d+ \d+) \d+\r\n", rb"\1 CAS\r\n", data)
    data = re.sub(rb" c\d+", b" cCAS", data)
    return re.sub(rb"VERSION \S+", b"VERSION X", data)


def converse(port: int, data: bytes, quiet: float = 1.0, limit: float = 10.0) -> tuple[bytes, bool]:
    """Send `data` then an `mn` sentinel; read until its MN (or quiet/close).

    Faster than exchange(): no quiet wait when every `mn` of `data` and the
    sentinel are answered. (everything received, whether it closed).
    """
    want = len(re.findall(rb"(?:^|\n)mn[ \r]", data)) + 1
    return talk(
        port,
        data + b"mn\r\n",
        quiet,
        limit,
        lambda out: out.endswith(b"MN\r\n") and out.count(b"MN\r\n") >= want,
    )
