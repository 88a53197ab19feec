"""The far-memory node.

Will hold (DESIGN.md section 1) an asyncio/uvloop TCP server that stores
objects per data structure, runs offloaded operations and evicts its own
coldest items under its memory limit. Imports `protocol.far` (and may reuse
`runtime.heap`), nothing of kvcache.
"""

__all__: list[str] = []
