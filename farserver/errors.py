"""Typed errors of the far node: each one is a reply status and its message.

    NodeError          -> ERROR        (base; a node-side failure)
      +-- NoStructure  -> NOT_FOUND    (no data structure with that id: destructed, or
      |                                 the node restarted; the body says which id)
      +-- BadRequest   -> BAD_REQUEST  (well-formed, but cannot apply: bad params, bad index)
      +-- NoSpace      -> NO_SPACE     (over the memory limit, nothing evictable)
      +-- NonNumeric   -> NON_NUMERIC  (incr/decr on a value that is not a u64)

A handler raises one before it changes anything; the connection turns it into
a reply frame in exactly one place (server.py) and keeps going. A malformed
frame is a `protocol.far.FrameError` instead: that closes the connection.
"""

from __future__ import annotations

from protocol.far import Status

__all__ = ["BadRequest", "NoSpace", "NoStructure", "NodeError", "NonNumeric"]


class NodeError(Exception):
    """A request the node cannot carry out; `status` is its reply status."""

    status = Status.ERROR

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message  # the reply body, UTF-8


class BadRequest(NodeError):
    """A well-formed request that makes no sense here (bad params, bad index)."""

    status = Status.BAD_REQUEST


class NoStructure(NodeError):
    """No data structure has that id: its objects are gone (a cache miss, lost data)."""

    status = Status.NOT_FOUND


class NoSpace(NodeError):
    """The node's memory limit is reached and nothing can be evicted."""

    status = Status.NO_SPACE


class NonNumeric(NodeError):
    """incr/decr on a value that is not the decimal ASCII of a u64."""

    status = Status.NON_NUMERIC
