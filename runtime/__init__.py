"""The far-memory runtime; knows nothing of memcached.

Will hold (DESIGN.md section 1): hub (greenlets on the uvloop event loop,
Waiter, spawn/sleep), heap (log-structured local memory: 1 MiB segments under
a byte budget), pointer (the 64-bit object metadata word), scope (DerefScope),
evacuator (pauseless evacuation of cold objects), farclient (pipelined
connections to far nodes), structures (RemHashTable, RemArray, RemBox) and
prefetch (stride detector for RemArray). Imports `protocol.far` only.
"""

__all__: list[str] = []
