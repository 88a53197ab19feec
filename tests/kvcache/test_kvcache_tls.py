"""Client TLS (memcached's -Z): a real kvcache with --tls-cert/--tls-key, pymemcache over TLS.

Certificates come from docker/make-certs.sh (openssl), made once per session
in a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kvproc import KvCache
from pymemcache.client.base import Client

from runtime.farprocess import FarProcess

ROOT = Path(__file__).resolve().parents[2]
MAKE_CERTS = ROOT / "docker" / "make-certs.sh"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _make_certs(where: Path) -> Path:
    subprocess.run(["sh", str(MAKE_CERTS), str(where)], check=True, capture_output=True)
    return where


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return _make_certs(tmp_path_factory.mktemp("certs"))


def _client_ctx(certs: Path, client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    return ctx


def _tls_talk(port: int, ctx: ssl.SSLContext, data: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(data)
            out = b""
            deadline = time.monotonic() + 10
            while not out.endswith(until) and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out


def _tls_args(certs: Path, *more: str) -> list[str]:
    return [
        "--far",
        "none",
        "--tls-cert",
        str(certs / "server.crt"),
        "--tls-key",
        str(certs / "server.key"),
        *more,
    ]


def test_pymemcache_stores_and_reads_over_tls(certs):
    server = KvCache(*_tls_args(certs))
    try:
        c = Client(("127.0.0.1", server.port), tls_context=_client_ctx(certs), timeout=10)
        value = bytes(range(256)) * 40
        assert c.set("k", value)
        assert c.get("k") == value
        assert c.set_many({f"m{i}": f"v{i}" for i in range(50)}) == []
        assert c.get_many([f"m{i}" for i in range(50)]) == {
            f"m{i}": f"v{i}".encode() for i in range(50)
        }
        assert c.incr("n", 1) is None and c.set("n", "41") and c.incr("n", 1) == 42
        assert c.delete("k") and c.get("k") is None
        settings = c.stats("settings")
        assert settings[b"ssl_enabled"] in (True, b"yes")
        assert settings[b"ssl_chain_cert"] == str(certs / "server.crt").encode()
        assert int(settings[b"ssl_verify_mode"]) == 0
        assert int(c.stats()[b"time_since_server_cert_refresh"]) >= 0
        c.close()
    finally:
        assert server.stop() == 0


def test_a_plaintext_client_gets_no_reply(certs):
    server = KvCache(*_tls_args(certs))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"version\r\n")
            got = b""
            try:
                while chunk := s.recv(4096):
                    got += chunk
            except (ConnectionResetError, TimeoutError):
                pass
        assert b"VERSION" not in got
        # and the server keeps serving TLS clients
        assert _tls_talk(server.port, _client_ctx(certs), b"version\r\n", b"\r\n").startswith(
            b"VERSION "
        )
    finally:
        assert server.stop() == 0


def test_tls_ca_requires_a_client_certificate(certs):
    server = KvCache(*_tls_args(certs, "--tls-ca", str(certs / "ca.crt")))
    try:
        with_cert = _client_ctx(certs, client_cert=True)
        assert _tls_talk(server.port, with_cert, b"version\r\n", b"\r\n").startswith(b"VERSION ")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            out = _tls_talk(server.port, _client_ctx(certs), b"version\r\n", b"\r\n")
            if not out:  # TLS 1.3: the refusal may only show as a closed connection
                raise ConnectionResetError("closed without a reply")
        c = Client(("127.0.0.1", server.port), tls_context=with_cert, timeout=10)
        assert int(c.stats("settings")[b"ssl_verify_mode"]) == 2
        c.close()
    finally:
        assert server.stop() == 0


def test_refresh_certs_reloads_and_a_bad_file_keeps_the_old_ones(certs, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(certs, live)
    server = KvCache(*_tls_args(live))
    try:
        old_ca = _client_ctx(certs)
        assert _tls_talk(server.port, old_ca, b"refresh_certs\r\n", b"\r\n") == b"OK\r\n"
        # new certificates from a new CA: after refresh_certs, new connections use them
        fresh = _make_certs(tmp_path / "fresh")
        for name in ("server.crt", "server.key"):
            shutil.copy(fresh / name, live / name)
        assert _tls_talk(server.port, old_ca, b"refresh_certs\r\n", b"\r\n") == b"OK\r\n"
        new_ca = _client_ctx(fresh)
        assert _tls_talk(server.port, new_ca, b"version\r\n", b"\r\n").startswith(b"VERSION ")
        with pytest.raises(ssl.SSLError):
            _tls_talk(server.port, old_ca, b"version\r\n", b"\r\n")
        # a broken key: an error line, and the certificates in use stay
        (live / "server.key").write_text("not a key\n")
        reply = _tls_talk(server.port, new_ca, b"refresh_certs\r\n", b"\r\n")
        assert reply.startswith(b"Error loading the certificate chain") and reply.endswith(b"\r\n")
        assert _tls_talk(server.port, new_ca, b"version\r\n", b"\r\n").startswith(b"VERSION ")
    finally:
        assert server.stop() == 0


def test_without_tls_refresh_certs_says_so():
    server = KvCache("--far", "none")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"refresh_certs\r\n")
            assert s.recv(100) == b"Error TLS not enabled\r\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["-Z"], 2, b"-Z: TLS needs --tls-cert and --tls-key"),
        (["--tls-cert", "x.crt"], 2, b"--tls-cert and --tls-key go together"),
        (["--tls-ca", "ca.crt"], 2, b"--tls-ca: client certificates are checked only"),
        (
            ["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"],
            1,
            b"kvcache: Error loading the certificate chain: /nonexistent.crt",
        ),
    ],
)
def test_bad_tls_options_are_one_line_errors(args, status, message):
    proc = subprocess.run(
        [sys.executable, "-m", "kvcache", "-p", "0", "--far", "none", *args],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == status
    assert message in proc.stderr
    if status == 1:
        assert proc.stderr.count(b"\n") == 1, proc.stderr


def test_healthcheck_over_tls(certs):
    server = KvCache(*_tls_args(certs, "--tls-ca", str(certs / "ca.crt")))
    check = [sys.executable, "-m", "kvcache.healthcheck", f"127.0.0.1:{server.port}"]
    tls = ["--tls-ca", str(certs / "ca.crt")]
    client = ["--tls-cert", str(certs / "client.crt"), "--tls-key", str(certs / "client.key")]
    try:
        ok = subprocess.run([*check, *tls, *client], capture_output=True, timeout=30)
        assert ok.returncode == 0 and ok.stdout.startswith(b"VERSION "), ok.stderr
        for args in ([], tls):  # plain TCP; TLS without the client certificate required
            bad = subprocess.run([*check, "--timeout", "2", *args], capture_output=True, timeout=30)
            assert bad.returncode == 1 and bad.stderr.startswith(b"unhealthy: "), bad
    finally:
        assert server.stop() == 0


# -- the far link over TLS ---------------------------------------------------------


def _far_tls_node(certs: Path, secret: Path) -> FarProcess:
    return FarProcess(
        "--tls-cert",
        str(certs / "server.crt"),
        "--tls-key",
        str(certs / "server.key"),
        "--tls-ca",
        str(certs / "ca.crt"),
        memory_mb=256,
        secret_file=str(secret),
    )


def _far_stats(port: int, group: str = "") -> dict[bytes, bytes]:
    c = Client(("127.0.0.1", port), timeout=10)
    try:
        return c.stats(group) if group else c.stats()
    finally:
        c.close()


def test_items_go_far_and_back_over_mutual_tls(certs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    node = _far_tls_node(certs, secret)
    try:
        kv = KvCache(
            "-m",
            "4",
            "--far",
            f"127.0.0.1:{node.port}",
            "--secret-file",
            str(secret),
            "--far-tls-ca",
            str(certs / "ca.crt"),
            "--far-tls-cert",
            str(certs / "client.crt"),
            "--far-tls-key",
            str(certs / "client.key"),
        )
        try:
            c = Client(("127.0.0.1", kv.port), timeout=10)
            values = {f"k{i}": bytes([i % 251]) * 10_000 for i in range(600)}  # 6 MB, -m 4
            for k, v in values.items():
                assert c.set(k, v)
            for k, v in values.items():
                assert c.get(k) == v, k
            st = _far_stats(kv.port)
            assert int(st[b"far_writes"]) > 100 and int(st[b"far_hits"]) > 100
            assert int(st[b"far_available"]) == 1
            assert _far_stats(kv.port, "settings")[b"far_tls"] == b"yes"
            c.close()
        finally:
            assert kv.stop() == 0
        # the healthcheck speaks to the node as kvcache does
        check = [sys.executable, "-m", "kvcache.healthcheck", f"127.0.0.1:{node.port}", "--far"]
        tls = ["--tls-ca", str(certs / "ca.crt")]
        mine = ["--tls-cert", str(certs / "client.crt"), "--tls-key", str(certs / "client.key")]
        ok = subprocess.run(
            [*check, "--secret-file", str(secret), *tls, *mine], capture_output=True, timeout=30
        )
        assert ok.returncode == 0 and ok.stdout.startswith(b"farserver "), ok
        plain = subprocess.run(
            [*check, "--secret-file", str(secret), "--timeout", "2"],
            capture_output=True,
            timeout=30,
        )
        assert plain.returncode == 1, plain
    finally:
        node.stop()


@pytest.mark.parametrize("mismatch", ["no client certificate", "another CA"])
def test_a_far_node_it_cannot_authenticate_with_is_never_used(certs, tmp_path, mismatch):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    node = _far_tls_node(certs, secret)
    if mismatch == "another CA":  # kvcache trusts another CA: the node's certificate fails
        other = _make_certs(tmp_path / "other")
        tls = ["--far-tls-ca", str(other / "ca.crt")]
        tls += [
            "--far-tls-cert",
            str(other / "client.crt"),
            "--far-tls-key",
            str(other / "client.key"),
        ]
    else:  # the node wants a client certificate kvcache does not have
        tls = ["--far-tls-ca", str(certs / "ca.crt")]
    try:
        kv = KvCache(
            "-m", "4", "--far", f"127.0.0.1:{node.port}", "--secret-file", str(secret),
            "--far-timeout", "1", *tls,
        )  # fmt: skip
        try:
            c = Client(("127.0.0.1", kv.port), timeout=10)
            for i in range(100):  # served locally, as with the node down
                assert c.set(f"k{i}", b"v%d" % i)
            assert c.get("k99") == b"v99"
            st = _far_stats(kv.port)
            assert int(st[b"far_available"]) == 0 and int(st[b"far_writes"]) == 0
            c.close()
        finally:
            assert kv.stop() == 0
    finally:
        node.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--far-tls-ca", "ca.crt"], b"--far-tls-ca: TLS goes to far nodes given as --far"),
        (["--far", "127.0.0.1:1", "--far-tls-cert", "c.crt"], b"--far-tls-cert and --far-tls-key"),
        (
            ["--far", "127.0.0.1:1", "--far-tls-cert", "c", "--far-tls-key", "k"],
            b"--far-tls-cert: TLS to the far node needs --far-tls-ca",
        ),
    ],
)
def test_bad_far_tls_options_are_usage_errors(args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "kvcache", "-p", "0", *args], capture_output=True, timeout=30
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_farserver_tls_options_are_checked(tmp_path):
    run = [sys.executable, "-m", "farserver", "-p", "0"]
    half = subprocess.run([*run, "--tls-cert", "x.crt"], capture_output=True, timeout=30)
    assert half.returncode == 2 and b"--tls-cert and --tls-key go together" in half.stderr
    missing = subprocess.run(
        [*run, "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key")],
        capture_output=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert b"Error loading the certificate chain: " + str(tmp_path / "no.crt").encode() in (
        missing.stderr
    )


def test_a_far_tier_over_mutual_tls(certs, tmp_path):
    """Two TLS nodes, two replicas: every node is reached over TLS, items go far and back."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    nodes = [_far_tls_node(certs, secret) for _ in range(2)]
    try:
        far = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        kv = KvCache(
            "-m", "4", "--far", far, "--far-replicas", "2", "--secret-file", str(secret),
            "--far-tls-ca", str(certs / "ca.crt"), "--far-tls-cert", str(certs / "client.crt"),
            "--far-tls-key", str(certs / "client.key"),
        )  # fmt: skip
        try:
            c = Client(("127.0.0.1", kv.port), timeout=10)
            values = {f"t{i}": bytes([i % 251]) * 10_000 for i in range(600)}  # 6 MB, -m 4
            for k, v in values.items():
                assert c.set(k, v)
            for k, v in values.items():
                assert c.get(k) == v, k
            st = c.stats("far")
            assert int(st[b"far_nodes_available"]) == 2
            assert int(st[b"far_replicas"]) == 2
            assert int(st[b"far_writes"]) > 100 and int(c.stats()[b"far_hits"]) > 100
            c.close()
        finally:
            assert kv.stop() == 0
    finally:
        for n in nodes:
            n.stop()
