"""Where a far object lives: weighted rendezvous (highest-random-weight) hashing.

    place(name, nodes, r) -> the indexes of the r nodes with the highest scores,
                             best first (the first is the object's primary)

    score(node, name) = -weight / ln(u),  u = a uniform draw in (0, 1) from a
                        64-bit mix of the node's seed and the name's hash

A pure function of the node list and the name (STYLE 15, as Ceph's straw2):
no state, nothing to rebalance, so a test can enumerate it. Properties:
- A node is first for a share weight / sum(weights) of names: -w/ln(u) is
  the straw2 draw, whose maximum falls on node i with probability w_i/W.
- Adding a node changes a name's replica set only by putting the new node in
  it (and pushing out its last member); removing a node changes only the sets
  that held it (the next node by score takes its place). Every other name
  keeps its nodes and their order: only the joining or leaving node's share
  moves. A consistent-hash ring gets the same with many virtual nodes per
  node and uneven shares; a modulo placement moves almost everything.
- A node is known by its seed, derived from its address (`node_seed`), so a
  node list given in another order places every name the same way.

Names are hashed with BLAKE2b (8 bytes), not Python's hash(), so placement
is the same in every process (tests, tools, a restarted cache).

Compiled (kvcache/compiled.py, placement.pxd): the mix is C 64-bit integer
arithmetic (wrapping, as the pure-Python masks make it), so placing a name
costs the digest and a few C operations per node. Measured on the shared
2-core dev machine while it ran a benchmark, three nodes, R = 2: 5.5-7 us
per name pure Python (the digest ~0.8 us, per node a mix ~0.5 us and a log);
1.7 us compiled, of which the digest is ~0.5 us. The single-node path
never calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import cython

__all__ = ["Node", "name_hash", "node_seed", "place"]

_M64 = (1 << 64) - 1
_INV53 = 1.0 / (1 << 53)
# splitmix64's multipliers, as C constants when compiled
_K1 = cython.declare(cython.ulonglong, 0xBF58476D1CE4E5B9)
_K2 = cython.declare(cython.ulonglong, 0x94D049BB133111EB)

Node = tuple[int, float]  # (seed, weight > 0)


def node_seed(address: str) -> int:
    """A node's 64-bit placement seed, from its HOST:PORT."""
    return int.from_bytes(blake2b(address.encode(), digest_size=8).digest(), "little")


def name_hash(name: Any) -> int:
    """A far name's 64-bit placement hash."""
    return int.from_bytes(blake2b(name, digest_size=8).digest(), "little")


def _mix(x: cython.ulonglong) -> cython.ulonglong:
    """splitmix64's finalizer: every bit of x flips about half the output bits."""
    if cython.compiled:  # C unsigned arithmetic wraps mod 2**64
        x = (x ^ (x >> 30)) * _K1
        x = (x ^ (x >> 27)) * _K2
        return x ^ (x >> 31)
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


@cython.locals(h=cython.ulonglong, seed=cython.ulonglong, u=cython.double, weight=cython.double)
def place(name: Any, nodes: Sequence[Node], r: cython.Py_ssize_t) -> tuple:
    """Indexes into `nodes` of the `r` nodes `name` (bytes-like) lives on, best first."""
    if not 0 < r <= len(nodes):
        raise ValueError(f"{r} replicas over {len(nodes)} nodes")
    h = name_hash(name)
    scores = []
    for i, (seed, weight) in enumerate(nodes):
        u = ((_mix(h ^ seed) >> 11) + 0.5) * _INV53  # in (0, 1), never 0 or 1
        scores.append((-weight / math.log(u), i))
    if r == 1:
        return (max(scores)[1],)
    scores.sort(reverse=True)
    return tuple(i for _, i in scores[:r])
