"""Shared fixtures: a real memcached oracle on an ephemeral loopback port, and
far-node hosts in network namespaces (`far_host`, `far_hosts`: tests/netns.py).

Without a memcached binary the tests that need it skip, and the run ends with
one line saying how many and how to enable them (CI installs memcached).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# fixtures: far nodes on hosts of their own (network namespaces)
from netns import far_host, far_hosts  # noqa: E402, F401
from oracle import ENABLE_MEMCACHED, MEMCACHED_MISSING, private_memcached  # noqa: E402


def pytest_report_header(config):
    """Say whether the hot modules run compiled (kvcache/compiled.py) or as pure Python."""
    from kvcache import compiled

    status = compiled.status()
    done = sum(status.values())
    if done == len(status):
        return f"kvcache: the {done} hot modules run compiled"
    return f"kvcache: {done} of {len(status)} hot modules compiled, the rest pure Python"


def pytest_sessionstart(session):
    """Refuse to test stale extensions, or a build other than the one expected.

    KVCACHE_EXPECT_COMPILED=1 (CI) or 0 (make test-pure) says which build must be tested.
    """
    from kvcache import compiled

    stale = compiled.stale()
    if stale:
        pytest.exit(f"stale extensions {stale}: rebuild them with `make test`", returncode=2)
    expect = os.environ.get("KVCACHE_EXPECT_COMPILED")
    status = compiled.status()
    if expect == "1" and not all(status.values()):
        pytest.exit(f"expected a compiled build, got {status}", returncode=2)
    if expect == "0" and any(status.values()):
        pytest.exit(f"expected the pure-Python build, got {status}", returncode=2)


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
