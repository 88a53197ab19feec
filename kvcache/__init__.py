"""The memcached server: one dispatcher (request -> response) over a RemHashTable.

Will hold the server loop, CLI, stats and config (DESIGN.md section 1).
Imports `protocol` and `runtime`; nothing imports it back.
"""

__all__: list[str] = []
