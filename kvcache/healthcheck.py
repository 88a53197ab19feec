"""`python -m kvcache.healthcheck HOST:PORT`: is a kvcache (or far node) serving?

    kvcache    connect, send `version`, expect one `VERSION ...` line
               (--tls-ca CA: over TLS, the server's certificate checked
               against CA; --tls-cert/--tls-key: the client's, when the
               server requires one)
    far node   (--far) connect, HELLO with the shared secret, then PING;
               expect OK for both and PING's bytes echoed (over TLS with
               --tls-ca, as for kvcache)

Exit status 0 when it answers as expected within --timeout seconds (default
3), 1 otherwise (with the reason on stderr), 2 for a bad command line. This
is the HEALTHCHECK of the Docker image and of both compose services; it uses
only the standard library and the far wire format, so it starts fast.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import time

from protocol import ProtocolError
from protocol.far import (
    VERSION,
    Frame,
    FrameReader,
    Op,
    Status,
    decode_hello_reply,
    encode_frame,
    encode_hello,
)
from protocol.tls import TLSError, client_context

__all__ = ["check_far", "check_kvcache", "main", "parse_hostport"]

_PING = b"healthcheck"


def parse_hostport(text: str) -> tuple[str, int]:
    """(host, port) from 'HOST:PORT' (also '[::1]:PORT')."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _recv_line(sock: socket.socket, deadline: float) -> bytes:
    buf = b""
    while b"\r\n" not in buf:
        buf += _recv(sock, deadline)
    return buf.split(b"\r\n", 1)[0]


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    chunk = sock.recv(4096)
    if not chunk:
        raise ConnectionError("closed by the server")
    return chunk


def _secret(path: str) -> bytes:
    """The secret as farserver reads it: the file less one trailing newline."""
    with open(path, "rb") as f:
        secret = f.read()
    if secret.endswith(b"\r\n"):
        return secret[:-2]
    return secret[:-1] if secret.endswith(b"\n") else secret


def check_kvcache(
    host: str, port: int, timeout: float = 3.0, tls: ssl.SSLContext | None = None
) -> str:
    """The server's `VERSION ...` line; raises OSError or ValueError if unhealthy."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        sock.sendall(b"version\r\n")
        line = _recv_line(sock, deadline)
    if not line.startswith(b"VERSION "):
        raise ValueError(f"unexpected reply {line[:80]!r}")
    return line.decode("ascii", "replace")


def check_far(
    host: str,
    port: int,
    secret: bytes = b"",
    timeout: float = 3.0,
    tls: ssl.SSLContext | None = None,
) -> str:
    """The far node's HELLO name after a PING round trip; raises if unhealthy."""
    deadline = time.monotonic() + timeout
    reader = FrameReader(replies=True)
    frames: list[Frame] = []
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        sock.sendall(
            encode_frame(1, Op.HELLO, 0, encode_hello(VERSION, secret))
            + encode_frame(2, Op.PING, 0, _PING)
        )
        while len(frames) < 2:
            reader.feed(_recv(sock, deadline))
            frames.extend(reader)
            if frames and frames[0].status != Status.OK:  # a refused HELLO closes
                hello = frames[0]
                raise ValueError(f"HELLO refused: {Status(hello.status).name} {hello.body!r}")
    hello, ping = frames[0], frames[1]
    if ping.status != Status.OK or ping.body != _PING:
        raise ValueError(f"PING answered {Status(ping.status).name} {ping.body[:80]!r}")
    return decode_hello_reply(hello.body)[1]


def main(argv: list[str] | None = None) -> int:
    """Check once; 0 if healthy, 1 if not."""
    ap = argparse.ArgumentParser(
        prog="python -m kvcache.healthcheck", description="exit 0 if the server answers"
    )
    ap.add_argument("address", type=parse_hostport, help="HOST:PORT")
    ap.add_argument("--far", action="store_true", help="the address is a far node")
    ap.add_argument("--secret-file", default=None, help="far node shared secret file")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    ap.add_argument("--tls-ca", default=None, help="over TLS: the CA of the server's certificate")
    ap.add_argument("--tls-cert", default=None, help="with --tls-ca: a client certificate")
    ap.add_argument("--tls-key", default=None, help="its private key")
    a = ap.parse_args(argv)
    if (a.tls_cert or a.tls_key) and not (a.tls_ca and a.tls_cert and a.tls_key):
        ap.error("--tls-cert and --tls-key go together, with --tls-ca")
    host, port = a.address
    try:
        tls = client_context(a.tls_ca, a.tls_cert, a.tls_key) if a.tls_ca else None
        if a.far:
            secret = _secret(a.secret_file) if a.secret_file else b""
            answer = check_far(host, port, secret, a.timeout, tls)
        else:
            answer = check_kvcache(host, port, a.timeout, tls)
    except (OSError, ValueError, ProtocolError, TLSError) as exc:
        print(f"unhealthy: {host}:{port}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
