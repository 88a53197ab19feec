"""kvcache.healthcheck: the Docker HEALTHCHECK of the cache and the far node.

Spec: `python -m kvcache.healthcheck HOST:PORT` exits 0 when a kvcache
answers `version` with a VERSION line, 1 otherwise; with `--far` it exits 0
when a far node accepts HELLO (with `--secret-file`'s secret) and echoes a
PING, 1 when it refuses the secret, is not a far node, or is not there.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading

import pytest
from kvproc import KvCache

from kvcache.healthcheck import check_far, check_kvcache, main, parse_hostport
from runtime.farprocess import FarProcess


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    """A shared-secret file as compose mounts it (with a trailing newline)."""
    path = tmp_path_factory.mktemp("secret") / "far_secret"
    path.write_bytes(b"s3cret-for-tests\n")
    return str(path)


@pytest.fixture(scope="module")
def far(secret_file):
    """A far node that requires the secret."""
    node = FarProcess(secret_file=secret_file)
    try:
        yield node
    finally:
        node.stop()


def test_parse_hostport():
    assert parse_hostport("127.0.0.1:11211") == ("127.0.0.1", 11211)
    assert parse_hostport("far:11311") == ("far", 11311)
    assert parse_hostport("[::1]:11211") == ("::1", 11211)
    for bad in ("11211", ":11211", "host:", "host:x", "host:70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_hostport(bad)


def test_kvcache_healthy_and_down():
    with KvCache("--far", "none") as kv:
        assert check_kvcache("127.0.0.1", kv.port).startswith("VERSION ")
        done = subprocess.run(
            [sys.executable, "-m", "kvcache.healthcheck", f"127.0.0.1:{kv.port}"],
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"VERSION ")
    assert main([f"127.0.0.1:{_closed_port()}"]) == 1


def test_far_node_with_secret(far, secret_file, capsys):
    assert check_far("127.0.0.1", far.port, b"s3cret-for-tests").startswith("farserver ")
    assert main(["--far", "--secret-file", secret_file, f"127.0.0.1:{far.port}"]) == 0
    assert main(["--far", f"127.0.0.1:{far.port}"]) == 1  # no secret: refused
    assert "AUTH_FAILED" in capsys.readouterr().err


def test_wrong_kind_of_server_is_unhealthy(far):
    # A far node waits for a whole 16-byte frame header: `version` gets no answer.
    assert main(["--timeout", "0.5", f"127.0.0.1:{far.port}"]) == 1
    with KvCache("--far", "none") as kv:
        assert main(["--far", "--timeout", "0.5", f"127.0.0.1:{kv.port}"]) == 1  # far vs kvcache


def test_silent_server_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        held = []
        threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
        assert main(["--timeout", "0.3", f"127.0.0.1:{port}"]) == 1
        for conn, _ in held:
            conn.close()
