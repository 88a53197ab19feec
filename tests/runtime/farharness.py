"""Run a test's main function in a green thread with a runtime wired to a far node."""

from __future__ import annotations

from protocol.far import Op
from runtime.farclient import FarClient
from runtime.farprocess import FarProcess as FarNode
from runtime.fartier import FarTier
from runtime.hub import run
from runtime.manager import Manager


class HoldingClient(FarClient):
    """A FarClient whose WRITEs go out but whose acks are held until release()."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.held: list = []  # (callback, status, body) of each held ack
        self.holding = True

    def submit(self, op, ds, body, callback):
        if self.holding and op == Op.WRITE:
            super().submit(op, ds, body, lambda s, b: self.held.append((callback, s, b)))
        else:
            super().submit(op, ds, body, callback)

    def release(self):
        """Deliver the held acks and stop holding (hub only: they resume green threads)."""
        self.holding = False
        held, self.held = self.held, []
        for cb, s, b in held:
            cb(s, b)


def with_runtime(
    node: FarNode, heap_bytes: int, main, *, timeout: float = 2.0, client=FarClient, **kw
):
    """Run main(manager) in a green thread with a Manager connected to `node`."""

    def entry():
        far = client("127.0.0.1", node.port, timeout=timeout)
        mgr = Manager(heap_bytes, far, **kw)
        mgr.start()
        assert far.wait_ready(10), "far node not reachable"
        try:
            return main(mgr)
        finally:
            mgr.close()

    return run(entry)


def with_tier(nodes: list[FarNode], heap_bytes: int, main, *, replicas: int = 2, timeout=2.0, **kw):
    """Run main(manager) in a green thread with a Manager over a FarTier of `nodes`."""

    def entry():
        far = FarTier([("127.0.0.1", n.port) for n in nodes], replicas, timeout=timeout)
        mgr = Manager(heap_bytes, far, **kw)
        mgr.start()
        assert far.wait_ready(10), "far tier not available"
        try:
            return main(mgr)
        finally:
            mgr.close()

    return run(entry)
