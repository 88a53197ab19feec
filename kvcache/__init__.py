"""The memcached server: one dispatcher (request -> response) over a RemHashTable.

    config      command-line settings      app      wiring, signals, embedded far node
    server      connections on the hub     dispatcher  one method per command
    stats       memcached's stats groups   errors   exceptions -> reply lines

Imports `protocol` and `runtime`; nothing imports it back.
"""

__all__: list[str] = []
