"""What the locust memcached user asks for: keys, value sizes, the command mix.

Plain Python with no locust import (importing locust monkey-patches the
process with gevent), so the workload is tested on its own and the
locustfile only wires it to locust.

    host        HOST:PORT, memcache://HOST:PORT, HOST (port 11211), [::1]:PORT
    keys        `prefix` + 10-digit rank; rank 0 is the hottest. Zipf skew s:
                P(rank r) ~ 1 / (r + 1)^s over `n` keys; s = 0 is uniform.
                (s = 0.99 is YCSB's default: with 10,000 keys the hottest
                1% of keys draw ~52% of the requests.)
    value size  comma-separated SIZE[:WEIGHT] choices, SIZE either N or LO-HI
                (uniform in [LO, HI]), sizes with an optional k/m suffix:
                `100`, `16-4096`, `100:9,100k:1` (90% 100 B, 10% 100 KiB)
    mix         comma-separated OP=WEIGHT, OP one of get, set, mget, delete:
                `get=85,set=10,mget=4,delete=1`
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_PORT",
    "OPS",
    "Keys",
    "Mix",
    "ValueSizes",
    "parse_host",
    "parse_size",
    "payload",
]

DEFAULT_PORT = 11211
OPS = ("get", "set", "mget", "delete")
_UNITS = {"k": 1024, "m": 1024 * 1024}
_BLOCK = os.urandom(64 * 1024)  # value bytes are slices (or repeats) of this block


def parse_host(text: str | None) -> tuple[str, int]:
    """(host, port) from locust's --host: HOST:PORT, memcache://HOST:PORT or HOST."""
    if not text:
        raise ValueError("no host: pass --host HOST:PORT (for example 127.0.0.1:11211)")
    rest = text.strip()
    scheme, sep, after = rest.partition("://")
    if sep:
        if scheme.lower() not in ("memcache", "memcached"):
            raise ValueError(f"host {text!r}: scheme must be memcache://, not {scheme}://")
        rest = after
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [v6 address] or [v6 address]:port
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise ValueError(f"host {text!r}: expected [ADDRESS]:PORT")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    if not host:
        raise ValueError(f"host {text!r} has no address")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"host {text!r}: bad port {port!r}")
    return host, int(port)


def parse_size(text: str) -> int:
    """Bytes from '100', '4k', '1m'."""
    t = text.strip().lower()
    mult = _UNITS.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in _UNITS else t
    if not digits.isdigit():
        raise ValueError(f"not a size: {text!r}")
    return int(digits) * mult


@lru_cache(maxsize=8)
def _cumulative(n: int, skew: float) -> tuple[list[float], float]:
    cum = list(itertools.accumulate((r + 1) ** -skew for r in range(n)))
    return cum, cum[-1]


@dataclass(frozen=True)
class Keys:
    """A key space of `n` keys drawn with Zipf skew `skew` (0: uniform)."""

    n: int = 10_000  # distinct keys
    skew: float = 0.99  # Zipf exponent; 0 = uniform
    prefix: str = "kv:"  # prepended to every key

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"key space must hold at least one key, not {self.n}")
        if self.skew < 0:
            raise ValueError(f"Zipf skew must be >= 0, not {self.skew}")
        if len(self.key(self.n - 1)) > 250:
            raise ValueError("keys would be longer than memcached's 250 bytes")
        if any(c.isspace() or not c.isprintable() for c in self.prefix):
            raise ValueError(f"key prefix {self.prefix!r} has spaces or control characters")

    def key(self, rank: int) -> str:
        """The key of a rank (0 = hottest)."""
        return f"{self.prefix}{rank:010d}"

    def rank(self, rng: random.Random) -> int:
        """A rank drawn from the distribution (first call builds its table: O(n))."""
        if self.skew == 0:
            return rng.randrange(self.n)
        cum, total = _cumulative(self.n, self.skew)
        return bisect.bisect_right(cum, rng.random() * total)

    def draw(self, rng: random.Random) -> str:
        """A key drawn from the distribution."""
        return self.key(self.rank(rng))

    def draw_many(self, rng: random.Random, count: int) -> list[str]:
        """`count` distinct keys (fewer if the key space is smaller)."""
        count = min(count, self.n)
        keys: dict[str, None] = {}
        for _ in range(count * 20):  # a very skewed draw repeats itself: bounded retries
            keys[self.draw(rng)] = None
            if len(keys) == count:
                break
        return list(keys)


class ValueSizes:
    """A distribution of value sizes from a spec such as `100:9,16-4096:1`."""

    def __init__(self, spec: str):
        self.spec = spec
        self.ranges: list[tuple[int, int]] = []  # (lo, hi) bytes, inclusive
        weights: list[float] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            size, _, weight = part.partition(":")
            lo, dash, hi = size.partition("-")
            low = parse_size(lo)
            high = parse_size(hi) if dash else low
            if high < low:
                raise ValueError(f"value size range {size!r} is empty")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"value size weight {weight!r} is not a number") from None
            if w <= 0:
                raise ValueError(f"value size weight must be positive, not {weight!r}")
            self.ranges.append((low, high))
            weights.append(w)
        if not self.ranges:
            raise ValueError(f"empty value size spec {spec!r}")
        self.cum = list(itertools.accumulate(weights))  # cumulative weights

    @property
    def max(self) -> int:
        """The largest size this distribution can draw."""
        return max(hi for _, hi in self.ranges)

    def size(self, rng: random.Random) -> int:
        """A size drawn from the distribution."""
        i = 0
        if len(self.ranges) > 1:
            i = bisect.bisect_right(self.cum, rng.random() * self.cum[-1])
        lo, hi = self.ranges[i]
        return lo if lo == hi else rng.randint(lo, hi)


class Mix:
    """Weighted memcached operations from a spec such as `get=85,set=10,mget=4,delete=1`."""

    def __init__(self, spec: str):
        self.spec = spec
        self.ops: list[str] = []
        weights: list[float] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            op, eq, weight = part.partition("=")
            op = op.strip().lower()
            if op not in OPS:
                raise ValueError(f"unknown operation {op!r} in mix (use {', '.join(OPS)})")
            try:
                w = float(weight) if eq else 1.0
            except ValueError:
                raise ValueError(f"mix weight {weight!r} is not a number") from None
            if w < 0:
                raise ValueError(f"mix weight must be >= 0, not {weight!r}")
            if w:
                self.ops.append(op)
                weights.append(w)
        if not self.ops:
            raise ValueError(f"mix {spec!r} has no operation with a positive weight")
        self.cum = list(itertools.accumulate(weights))  # cumulative weights

    def choose(self, rng: random.Random) -> str:
        """An operation drawn from the mix."""
        return self.ops[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]

    def share(self, op: str) -> float:
        """The fraction of requests that are `op`."""
        share = 0.0
        prev = 0.0
        for name, c in zip(self.ops, self.cum, strict=True):
            if name == op:
                share += c - prev
            prev = c
        return share / self.cum[-1]


def payload(size: int) -> bytes:
    """`size` bytes of incompressible value."""
    if size <= len(_BLOCK):
        return _BLOCK[:size]
    return (_BLOCK * (size // len(_BLOCK) + 1))[:size]
