"""Command-line settings of the kvcache server.

    kvcache [-p 11211] [-l 127.0.0.1] [-m MB] [-I SIZE] [-c CONNS] [-b BACKLOG]
            [--far HOST:PORT[,HOST:PORT...] | none] [--far-replicas R]
            [--far-rereplicate-rate MB/s]
            [--far-memory MB] [--nt-threshold SIZE] [--far-timeout SECONDS]
            [--secret-file F] [-A] [-v]
            [-Z] [--tls-cert F --tls-key F [--tls-ca F]]
            [--far-tls-ca F [--far-tls-cert F --far-tls-key F]]

Without --far an embedded far node is started as a child process on an
ephemeral loopback port (supervised: restarted when it dies; stopped on
exit); `--far none` runs local only: cold items are evicted, as memcached
evicts them. Several --far nodes make a far tier (runtime/fartier.py): each
far item on --far-replicas of them (default 1, at most the number of
nodes; more than 1 needs several nodes). When a node goes down or comes
back empty, items that lost a copy get one again in the background, paced to
--far-rereplicate-rate megabytes of scanned items per second (default 64).
-I is bounded as memcached bounds
it: at least 1024 bytes, at most 1 GiB and at most half of -m. A secret file
that cannot be read is a one-line error (exit status 1), as is a port that
cannot be bound.

TLS for clients, as memcached's -Z (1.5.13+): --tls-cert (the certificate
chain, PEM) and --tls-key turn it on for the listener (-Z only insists on
them); --tls-ca also requires every client to present a certificate that CA
signed (memcached's ssl_verify_mode 2 with ssl_ca_cert). Certificates that
cannot be loaded are a one-line error at startup; `refresh_certs` reloads
them while serving.

TLS to the far nodes (`--far HOST:PORT[,...]` only; the embedded node is on
loopback): --far-tls-ca checks each node's certificate (chain and name:
HOST must be in it), --far-tls-cert/--far-tls-key present kvcache's own to
nodes started with --tls-ca (mutual authentication). The secret still goes
in HELLO.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from protocol.far import secret_from_file
from protocol.tls import TLSError, client_context, listener_options

__all__ = ["Settings", "parse_args", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from '1048576', '512k', '1m', '2g' (memcached's -I syntax)."""
    t = text.strip().lower()
    unit = t[-1] if t and t[-1] in _UNITS else ""
    number = t[:-1] if unit else t
    try:
        value = int(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def far_nodes(text: str) -> list[tuple[str, int]]:
    """[(host, port), ...] of `--far HOST:PORT[,HOST:PORT...]`; ArgumentTypeError if malformed."""
    nodes: list[tuple[str, int]] = []
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"--far takes HOST:PORT[,HOST:PORT...] (ports 1-65535) or none, not {text!r}"
            )
        if (host, int(port)) in nodes:
            raise argparse.ArgumentTypeError(f"--far lists {host}:{port} twice")
        nodes.append((host, int(port)))
    return nodes


def _far(text: str) -> str:
    if text == "none":
        return text
    far_nodes(text)
    return text


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--far-rereplicate-rate takes megabytes per second, not {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--far-rereplicate-rate must be positive, not {text}")
    return value


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--far-replicas takes a number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--far-replicas must be at least 1, not {value}")
    return value


@dataclass
class Settings:
    """What the server runs with."""

    port: int = 11211
    listen: str = "127.0.0.1"
    memory_mb: int = 64  # local heap budget
    item_size_max: int = 1 << 20  # bytes, -I
    max_connections: int = 1024
    listen_backlog: int = 1024  # -b: the listen queue, memcached's default
    far: str | None = None  # HOST:PORT[,HOST:PORT...], "none", or None: start an embedded node
    far_nodes: list[tuple[str, int]] | None = None  # --far parsed: (host, port) per node
    far_replicas: int = 1  # copies of each far item (several --far nodes)
    far_rereplicate_mb: float = 64.0  # re-replication pace, MB of scanned items per second
    far_memory_mb: int = 1024  # the embedded node's -m
    nt_threshold: int | None = None  # values this big are read non-temporally
    far_timeout: float = 2.0  # seconds a far request may take
    secret_file: str | None = None
    secret: bytes = b""  # the secret file's bytes less one trailing newline
    enable_shutdown: bool = False  # -A: allow the shutdown command
    verbose: int = 0
    tls_cert: str | None = None  # client TLS: certificate chain (PEM)
    tls_key: str | None = None  # its private key
    tls_ca: str | None = None  # require client certificates this CA signed
    ssl_context: Any = None  # the listener's ssl.SSLContext (None: plain TCP)
    far_tls_ca: str | None = None  # TLS to the far node: its certificate's CA
    far_tls_cert: str | None = None  # kvcache's client certificate for it
    far_tls_key: str | None = None
    far_ssl_context: Any = None  # the far link's ssl.SSLContext (None: plain TCP)


def parse_args(argv: list[str] | None = None) -> Settings:
    """Settings from the command line."""
    ap = argparse.ArgumentParser(
        prog="kvcache", description="memcached-compatible far-memory cache"
    )
    ap.add_argument("-p", "--port", type=int, default=11211, help="TCP port (default 11211)")
    ap.add_argument("-l", "--listen", default="127.0.0.1", help="address (default 127.0.0.1)")
    ap.add_argument("-m", "--memory-limit", type=int, default=64, help="local heap MB (default 64)")
    ap.add_argument("-I", "--max-item-size", type=parse_size, default=1 << 20, help="e.g. 1m")
    ap.add_argument("-c", "--conn-limit", type=int, default=1024, help="max connections")
    ap.add_argument(
        "-b", "--listen-backlog", type=int, default=1024, help="listen queue (default 1024)"
    )
    ap.add_argument(
        "--far", type=_far, default=None, help="far node(s) HOST:PORT[,HOST:PORT...], or none"
    )
    ap.add_argument(
        "--far-replicas", type=_replicas, default=1, help="copies of each far item (default 1)"
    )
    ap.add_argument(
        "--far-rereplicate-rate",
        type=_rate,
        default=64.0,
        help="MB/s of items scanned to re-replicate after a node loss (default 64)",
    )
    ap.add_argument("--far-memory", type=int, default=1024, help="embedded far node MB")
    ap.add_argument("--nt-threshold", type=parse_size, default=None, help="non-temporal size")
    ap.add_argument("--far-timeout", type=float, default=2.0, help="far request timeout, s")
    ap.add_argument("--secret-file", default=None, help="far node shared secret file")
    ap.add_argument("-A", "--enable-shutdown", action="store_true", help="allow `shutdown`")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    ap.add_argument(
        "-Z", "--enable-ssl", action="store_true", help="TLS for clients (needs --tls-cert/key)"
    )
    ap.add_argument("--tls-cert", default=None, help="client TLS certificate chain (PEM)")
    ap.add_argument("--tls-key", default=None, help="its private key (PEM)")
    ap.add_argument("--tls-ca", default=None, help="require client certificates from this CA")
    ap.add_argument("--far-tls-ca", default=None, help="TLS to the far node: its CA (PEM)")
    ap.add_argument("--far-tls-cert", default=None, help="a client certificate for the far node")
    ap.add_argument("--far-tls-key", default=None, help="its private key")
    a = ap.parse_args(argv)
    if a.memory_limit < 3:
        ap.error("-m must be at least 3 (MB: three 1 MiB segments)")
    if a.max_item_size < 1024:
        ap.error("-I: item max size cannot be less than 1024 bytes")
    if a.max_item_size > 1 << 30:
        ap.error("-I: cannot set item size limit higher than a gigabyte")
    if a.max_item_size > (a.memory_limit << 20) // 2:
        ap.error(
            f"-I: cannot set item size limit higher than 1/2 of memory max (-m {a.memory_limit})"
        )
    if a.listen_backlog < 1:
        ap.error("-b: the listen backlog must be at least 1")
    if a.enable_ssl and (a.tls_cert is None or a.tls_key is None):
        ap.error("-Z: TLS needs --tls-cert and --tls-key")
    ssl_context = None
    try:
        ssl_context = listener_options(a.tls_cert, a.tls_key, a.tls_ca)
    except ValueError as exc:
        ap.error(str(exc))
    except TLSError as exc:
        ap.exit(1, f"kvcache: {exc}\n")
    if (a.far_tls_cert is None) != (a.far_tls_key is None):
        ap.error("--far-tls-cert and --far-tls-key go together")
    if a.far_tls_cert is not None and a.far_tls_ca is None:
        ap.error("--far-tls-cert: TLS to the far node needs --far-tls-ca")
    if a.far_tls_ca is not None and (a.far is None or a.far == "none"):
        ap.error("--far-tls-ca: TLS goes to far nodes given as --far HOST:PORT[,...]")
    far_ssl_context = None
    if a.far_tls_ca is not None:
        try:
            far_ssl_context = client_context(a.far_tls_ca, a.far_tls_cert, a.far_tls_key)
        except TLSError as exc:
            ap.exit(1, f"kvcache: {exc}\n")
    nodes = far_nodes(a.far) if a.far not in (None, "none") else None
    if a.far_replicas > (len(nodes) if nodes else 1):
        if nodes:
            where = f"{len(nodes)} far node{'s' if len(nodes) > 1 else ''}"
        else:
            where = "the embedded far node" if a.far is None else "--far none"
        ap.error(f"--far-replicas {a.far_replicas}: more copies than far nodes ({where})")
    secret = b""
    if a.secret_file:
        try:
            with open(a.secret_file, "rb") as f:
                secret = f.read()
        except OSError as exc:
            ap.exit(1, f"kvcache: cannot read --secret-file {a.secret_file}: {exc.strerror}\n")
        secret = secret_from_file(secret)
    return Settings(
        port=a.port,
        listen=a.listen,
        memory_mb=a.memory_limit,
        item_size_max=a.max_item_size,
        max_connections=a.conn_limit,
        listen_backlog=a.listen_backlog,
        far=a.far,
        far_nodes=nodes,
        far_replicas=a.far_replicas,
        far_rereplicate_mb=a.far_rereplicate_rate,
        far_memory_mb=a.far_memory,
        nt_threshold=a.nt_threshold,
        far_timeout=a.far_timeout,
        secret_file=a.secret_file,
        secret=secret,
        enable_shutdown=a.enable_shutdown,
        verbose=a.verbose,
        tls_cert=a.tls_cert,
        tls_key=a.tls_key,
        tls_ca=a.tls_ca,
        ssl_context=ssl_context,
        far_tls_ca=a.far_tls_ca,
        far_tls_cert=a.far_tls_cert,
        far_tls_key=a.far_tls_key,
        far_ssl_context=far_ssl_context,
    )
