"""Shared fixtures: a real memcached oracle on an ephemeral loopback port."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from oracle import Memcached  # noqa: E402


@pytest.fixture(scope="session")
def memcached():
    """A running memcached 1.6 (Debian's) to compare bytes with; skips if absent."""
    try:
        server = Memcached()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
