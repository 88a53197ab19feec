"""The one function that turns an exception escaping a request into a reply line.

protocol.ProtocolError  -> its memcached line (ERROR / CLIENT_ERROR / SERVER_ERROR)
runtime.OutOfMemory     -> SERVER_ERROR out of memory storing object
runtime.FarMemoryError  -> SERVER_ERROR far memory unavailable
anything else           -> None: a bug; the server logs the request and
                           closes that connection (DESIGN §8)
"""

from __future__ import annotations

from protocol import ProtocolError, error_line
from runtime.errors import FarMemoryError, OutOfMemory

__all__ = ["reply_for"]


def reply_for(exc: BaseException) -> bytes | None:
    """The reply line for `exc`, b"" if noreply hides it, None if it is a bug."""
    if isinstance(exc, ProtocolError):
        return error_line(exc)
    if isinstance(exc, OutOfMemory):
        return b"SERVER_ERROR out of memory storing object\r\n"
    if isinstance(exc, FarMemoryError):
        return b"SERVER_ERROR far memory unavailable\r\n"
    return None
