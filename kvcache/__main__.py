"""`python -m kvcache` / the `kvcache` command: run the server."""

from __future__ import annotations

import logging
import sys

from kvcache.app import App
from kvcache.config import parse_args


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stopped."""
    settings = parse_args(argv)
    level = logging.WARNING - 10 * min(settings.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return App(settings).run()


if __name__ == "__main__":
    sys.exit(main())
