"""`farserver` / `python -m farserver`: run a far-memory node until SIGTERM.

Logs to stderr, one message per line; the first is exactly
`farserver listening on HOST:PORT` (with -p 0, the port actually bound), which
tests and the embedded-node launcher parse. Exit status: 0 after SIGTERM or
SIGINT, 1 when the address cannot be bound, 2 for a bad command line.
"""

from __future__ import annotations

import logging
import sys

import uvloop

from farserver.config import parse_args
from farserver.server import serve

__all__ = ["main"]

logger = logging.getLogger("farserver")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, serve until a stop signal, return the exit status."""
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if config.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        uvloop.run(serve(config))
    except OSError as exc:
        logger.error("farserver: cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
