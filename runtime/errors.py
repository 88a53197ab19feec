"""The runtime's one exception hierarchy (DESIGN §8).

    FarMemoryError
      +-- FarUnavailable   the far node is down or unreachable
      +-- FarTimeout       the far node did not answer within the timeout
      +-- FarDataLost      the far node lost an object only it held (restart)
      +-- OutOfMemory      local memory can't be had (no far node to evict to)
    HubError
      +-- WouldPark        a call that would park was made from the hub
      +-- NotInHub         hub-only code ran outside the hub
      +-- WaiterReused     a Waiter was waited on twice

HubErrors are programming errors except WouldPark, which is the signal the
server uses to move a request into a pooled greenlet (DESIGN §2).
"""

from __future__ import annotations

__all__ = [
    "FarDataLost",
    "FarMemoryError",
    "FarTimeout",
    "FarUnavailable",
    "HubError",
    "NotInHub",
    "OutOfMemory",
    "WaiterReused",
    "WouldPark",
]


class FarMemoryError(Exception):
    """Base of every far-memory failure a data-structure call may raise."""


class FarUnavailable(FarMemoryError):
    """The far node is down or unreachable (the client is reconnecting)."""


class FarTimeout(FarMemoryError):
    """The far node did not answer within the request timeout."""


class FarDataLost(FarMemoryError):
    """An object whose only copy was far is gone (the far node restarted)."""


class OutOfMemory(FarMemoryError):
    """No local memory could be freed for an allocation in time."""


class HubError(Exception):
    """Misuse of the hub's greenlet discipline."""


class WouldPark(HubError):
    """A call that must park was made from the hub; nothing was changed."""


class NotInHub(HubError):
    """Hub-only code (resuming a greenlet) was called outside the hub."""


class WaiterReused(HubError):
    """A Waiter was waited on (or resumed) more than once."""
