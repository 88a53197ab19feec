"""The far-memory node: stores objects per data structure, runs offloaded ops.

An asyncio/uvloop TCP server speaking `protocol.far` (DESIGN.md §7). Clients
construct data structures on it (boxes, arrays, hash tables), read, write
and remove objects by name, and run memcached verbs and array reductions at
the node (COMPUTE, AIFM's remote agent), and page through a structure's
objects with a stable cursor (SCAN). Under its memory limit (-m) it
evicts the least-recently-used items of cache tables; everything else gets
NO_SPACE. It imports `protocol.far` and nothing of kvcache or runtime.

    config.py    command line -> Config
    server.py    connections, HELLO/auth, batching, shutdown
    ops.py       op -> handler table
    compute.py   compute op registry (name -> function)
    node.py      ds registry, construct params, counters, stats
    store.py     Box, Array, HashTable (LRU, expiry)
    seqlog.py    write-order log and cursors of SCAN
    memory.py    per-object cost, the limit, eviction across cache tables
    errors.py    NodeError -> reply status
"""

from farserver.config import Config, parse_args
from farserver.node import Node
from farserver.server import serve

__all__ = ["Config", "Node", "parse_args", "serve"]
