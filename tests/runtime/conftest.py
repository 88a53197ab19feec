"""Runtime fixtures: a real farserver process and a runtime wired to it."""

from __future__ import annotations

import pytest

from runtime.farprocess import FarProcess as FarNode


@pytest.fixture
def far_node():
    """A farserver on an ephemeral 127.0.0.1 port, stopped by PID afterwards."""
    node = FarNode()
    try:
        yield node
    finally:
        node.stop()
