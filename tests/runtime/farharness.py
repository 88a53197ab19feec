"""Run a test's main function in a green thread with a runtime wired to a far node."""

from __future__ import annotations

from runtime.farclient import FarClient
from runtime.farprocess import FarProcess as FarNode
from runtime.hub import run
from runtime.manager import Manager


def with_runtime(node: FarNode, heap_bytes: int, main, *, timeout: float = 2.0, **kw):
    """Run main(manager) in a green thread with a Manager connected to `node`."""

    def entry():
        far = FarClient("127.0.0.1", node.port, timeout=timeout)
        mgr = Manager(heap_bytes, far, **kw)
        mgr.start()
        assert far.wait_ready(10), "far node not reachable"
        try:
            return main(mgr)
        finally:
            mgr.close()

    return run(entry)
