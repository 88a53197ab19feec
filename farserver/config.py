"""The far node's command line and the settings it yields.

    farserver [-p 11311] [-l 127.0.0.1] [-m 1024] [--secret-file F] [--parent-fd N] [-v]
              [--tls-cert F --tls-key F [--tls-ca F]]

`-p 0` picks an ephemeral port (printed in the startup line). The secret
file's bytes, less one trailing newline, are the shared secret HELLO must
present; without one, any secret is accepted. `--parent-fd N` names the read
end of a pipe whose write end the parent holds: when it reads end-of-file
(the parent exited, however), the node stops as on SIGTERM. kvcache starts
its embedded node so, and it never outlives the cache.

--tls-cert/--tls-key serve the far protocol over TLS only; --tls-ca also
requires each client (kvcache's --far-tls-cert) to present a certificate that
CA signed: mutual authentication, for a node on a network nobody trusts. The
shared secret still opens every connection.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from protocol.far import DEFAULT_MAX_FRAME, secret_from_file
from protocol.tls import TLSError, listener_options

__all__ = ["DEFAULT_PORT", "Config", "parse_args"]

DEFAULT_PORT = 11311


@dataclass(frozen=True, slots=True)
class Config:
    """What one farserver process was asked to be."""

    host: str = "127.0.0.1"  # listen address
    port: int = DEFAULT_PORT  # TCP port; 0 = ephemeral
    memory_mb: int = 1024  # -m: MiB of stored objects (memory.py's accounting)
    secret: bytes | None = None  # HELLO's shared secret; None accepts any
    verbose: bool = False  # -v: debug logging
    max_frame: int = DEFAULT_MAX_FRAME  # bytes after a frame's length field
    parent_fd: int | None = None  # a pipe's read end: end-of-file = the parent is gone
    tls_cert: str | None = None  # TLS: certificate chain (PEM)
    tls_key: str | None = None  # its private key
    tls_ca: str | None = None  # clients must present a certificate this CA signed
    ssl_context: Any = None  # the listener's ssl.SSLContext; None: plain TCP

    @property
    def limit_bytes(self) -> int:
        """The memory limit in bytes."""
        return self.memory_mb * 1024 * 1024


def _read_secret(parser: argparse.ArgumentParser, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            secret = f.read()
    except OSError as exc:
        parser.error(f"cannot read secret file: {exc}")
    secret = secret_from_file(secret)
    if not secret:
        parser.error(f"secret file {path} is empty")
    return secret


def parse_args(argv: list[str] | None = None) -> Config:
    """The Config for a command line (argv without the program name)."""
    parser = argparse.ArgumentParser(
        prog="farserver", description="kvcache's far-memory node (AIFM-style)."
    )
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any)")
    parser.add_argument("-l", "--listen", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "-m", "--memory-limit", type=int, default=1024, metavar="MB", help="MiB of objects"
    )
    parser.add_argument("--secret-file", metavar="F", help="file holding HELLO's shared secret")
    parser.add_argument(
        "--parent-fd",
        type=int,
        metavar="N",
        help="stop when this inherited pipe reaches end-of-file (the parent exited)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--tls-cert", metavar="F", help="TLS certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="F", help="its private key (PEM)")
    parser.add_argument("--tls-ca", metavar="F", help="require client certificates from this CA")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"port {args.port} is not in 0..65535")
    if args.memory_limit < 1:
        parser.error(f"-m {args.memory_limit}: the limit is at least 1 MiB")
    secret = _read_secret(parser, args.secret_file) if args.secret_file else None
    if args.parent_fd is not None:
        try:
            os.fstat(args.parent_fd)
        except OSError as exc:
            parser.error(f"--parent-fd {args.parent_fd}: {exc.strerror}")
    ssl_context = None
    try:
        ssl_context = listener_options(args.tls_cert, args.tls_key, args.tls_ca)
    except (ValueError, TLSError) as exc:
        parser.error(str(exc))
    return Config(
        args.listen,
        args.port,
        args.memory_limit,
        secret,
        args.verbose,
        parent_fd=args.parent_fd,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        ssl_context=ssl_context,
    )
