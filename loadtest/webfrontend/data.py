"""The web frontend's data set, request stream and per-request compute (AIFM §7.2).

    request r (0 <= r < n_keys / 32):  prefix = b"%010d" % r   (10 characters)
        keys   prefix + b"00" ... prefix + b"31"              (12 bytes each)
        values u32 each, from one seeded stream                 (4 bytes each)
        index  sum(values) % n_elems                            -> array element
        reply  snappy(AES-128-CBC(element, iv = index))         checksum: crc32(reply)

- Everything is a pure function of (n_keys, n_elems, seed): every mode, the
  loaders and the tests' reference derive the same bytes from it, and an
  element's 8 KiB are generated on demand (never the whole 256 MiB at once).
- Popularity: Zipf with s = 0.85 over the requests, rank -> request through a
  seeded permutation (popular requests are not neighbours in key space or in
  the array). The stream is drawn up front (`random.choices` over the CDF).
- The working set W is the data's own bytes: n_keys x 16 + n_elems x 8 KiB
  (2^20 keys and 2^15 elements: 16 MiB + 256 MiB = 272 MiB). Local-memory
  percentages are of W.
"""

from __future__ import annotations

import itertools
import random
import zlib
from array import array
from dataclasses import dataclass, field

import cramjam
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["KEYS_PER_REQUEST", "Dataset", "Responder", "zipf_stream"]

KEYS_PER_REQUEST = 32
ELEM_SIZE = 8192  # bytes per array element
KEY_SIZE = 12  # 10-character prefix + 2-digit index
VALUE_SIZE = 4
SUFFIXES = tuple(b"%02d" % j for j in range(KEYS_PER_REQUEST))
AES_KEY = bytes(range(16))


@dataclass
class Dataset:
    """The generated data: keys, 4-byte values and 8 KiB elements, by seed."""

    n_keys: int = 1 << 20  # multiple of 32
    n_elems: int = 1 << 15
    seed: int = 5
    values: array = field(init=False, repr=False)  # u32 per key, key id = r * 32 + j

    def __post_init__(self) -> None:
        if self.n_keys % KEYS_PER_REQUEST or self.n_keys <= 0 or self.n_elems <= 0:
            raise ValueError("n_keys must be a positive multiple of 32, n_elems positive")
        raw = random.Random(self.seed).randbytes(4 * self.n_keys)
        self.values = array("I")
        self.values.frombytes(raw)
        if self.values.itemsize != 4:  # pragma: no cover - every platform we run on
            raise RuntimeError("array('I') is not 32-bit here")

    @property
    def n_requests(self) -> int:
        """Distinct requests (key prefixes)."""
        return self.n_keys // KEYS_PER_REQUEST

    @property
    def working_set(self) -> int:
        """W: bytes of keys, values and elements (the x-axis denominator)."""
        return self.n_keys * (KEY_SIZE + VALUE_SIZE) + self.n_elems * ELEM_SIZE

    @staticmethod
    def keys_of(r: int) -> list[bytes]:
        """The 32 keys of request r."""
        prefix = b"%010d" % r
        return [prefix + s for s in SUFFIXES]

    def items(self):
        """Yield (key, value) for every key, request by request."""
        values = self.values
        n = 0
        for r in range(self.n_requests):
            prefix = b"%010d" % r
            for s in SUFFIXES:
                yield prefix + s, values[n]
                n += 1

    def index_of(self, r: int) -> int:
        """The array element request r reads."""
        base = r * KEYS_PER_REQUEST
        return sum(self.values[base : base + KEYS_PER_REQUEST]) % self.n_elems

    def element(self, i: int) -> bytes:
        """Element i's 8 KiB (deterministic, incompressible)."""
        return random.Random(self.seed * 1_000_003 + i).randbytes(ELEM_SIZE)

    def reference(self, r: int, responder: Responder | None = None) -> int:
        """The checksum request r's reply must have, computed locally."""
        i = self.index_of(r)
        return zlib.crc32((responder or Responder()).reply(self.element(i), i))


class Responder:
    """The per-request compute: AES-128-CBC of the element, then Snappy."""

    __slots__ = ("_alg",)

    def __init__(self) -> None:
        self._alg = algorithms.AES(AES_KEY)

    def reply(self, element, index: int):
        """snappy(AES-128-CBC(element)) with the IV derived from the index (a buffer)."""
        enc = Cipher(self._alg, modes.CBC(index.to_bytes(16, "little"))).encryptor()
        ciphertext = enc.update(element)
        enc.finalize()  # 8 KiB is whole AES blocks: nothing pending
        return cramjam.snappy.compress_raw(ciphertext)


def zipf_stream(n: int, count: int, s: float = 0.85, seed: int = 7) -> list[int]:
    """`count` request ids drawn Zipf(s) over n requests, ranks permuted by seed."""
    rnd = random.Random(seed)
    perm = list(range(n))
    rnd.shuffle(perm)
    cdf = list(itertools.accumulate(k**-s for k in range(1, n + 1)))
    return rnd.choices(perm, cum_weights=cdf, k=count)
