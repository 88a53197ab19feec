"""TLS contexts for kvcache's two links: clients -> kvcache, kvcache -> far node.

    server_context(cert, key, ca)   a listener's: TLS 1.2+; with `ca`, every
                                    peer must present a certificate it signed
    client_context(ca, cert, key)   a connecting side's: the server's
                                    certificate checked against `ca` (and its
                                    name); `cert`/`key` answer a server that
                                    asks for one (mutual authentication)
    load_server_files(ctx, ...)     (re)load a listener's files, all or nothing
    listener_options(cert, key, ca) a listener's --tls-cert/--tls-key/--tls-ca:
                                    None without them, else server_context

Errors are TLSError with memcached's wording ("Error loading the certificate
chain: PATH : reason"), for a one-line exit at startup or refresh_certs'
reply. Only the standard library's ssl module.
"""

from __future__ import annotations

import os
import ssl

__all__ = [
    "TLSError",
    "client_context",
    "listener_options",
    "load_server_files",
    "server_context",
]


class TLSError(Exception):
    """Certificates or keys that cannot be loaded."""


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:  # which file: ssl does not say
        missing = key if os.path.exists(cert) else cert
        raise TLSError(f"Error loading the certificate chain: {missing} : {exc.strerror}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(
            f"Error loading the certificate chain or key: {cert}, {key} : {exc}"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"Error loading the CA certificate: {ca} : {exc}") from None


def load_server_files(ctx: ssl.SSLContext, cert: str, key: str, ca: str | None) -> None:
    """Load the chain, key and peer CA into `ctx`; TLSError if any fails.

    Everything is tried on a scratch context first, so a reload that fails
    leaves `ctx` as it was.
    """
    for target in (ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ctx):
        _load_chain(target, cert, key)
        if ca is not None:
            _load_ca(target, ca)


def server_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """A listener's context: TLS 1.2 or later; peers need a certificate `ca` signed, if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_server_files(ctx, cert, key, ca)
    if ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A connecting side's context: the server verified against `ca`; our own certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(ctx, ca)
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx


def listener_options(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext | None:
    """A listener's context from its --tls-cert, --tls-key and --tls-ca; None without them.

    ValueError for a combination that makes no sense (a usage error), TLSError
    for files that cannot be loaded.
    """
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if ca is not None and cert is None:
        raise ValueError(
            "--tls-ca: client certificates are checked only with --tls-cert and --tls-key"
        )
    return None if cert is None else server_context(cert, key, ca)
