"""Wire formats, sans-I/O: bytes in, events out; replies composed to bytes.

`protocol.memcache` is memcached's text and meta protocol; `protocol.far` is
the far-memory node's (frames with request ids, used by runtime and
farserver). Nothing here touches sockets, greenlets or storage, and nothing
here imports the rest of kvcache.
"""

from protocol.errors import ClientError, CommandError, ProtocolError, ServerError, error_line

__all__ = ["ClientError", "CommandError", "ProtocolError", "ServerError", "error_line"]
