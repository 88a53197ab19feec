"""Shared fixtures: a real memcached oracle on an ephemeral loopback port.

Without a memcached binary the tests that need it skip, and the run ends with
one line saying how many and how to enable them (CI installs memcached).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from oracle import ENABLE_MEMCACHED, MEMCACHED_MISSING, private_memcached  # noqa: E402


@pytest.fixture(scope="session")
def memcached():
    """A running memcached 1.6 (Debian's) to compare bytes with; skips if absent."""
    with private_memcached() as server:
        yield server


def pytest_terminal_summary(terminalreporter):
    """One line for all the tests skipped for lack of memcached, and how to run them."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and MEMCACHED_MISSING in r.longrepr[2]
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: {MEMCACHED_MISSING} (the oracle they compare"
            f" kvcache with); to run them: {ENABLE_MEMCACHED} && make test",
            yellow=True,
            bold=True,
        )
