"""The TLS contexts that check the platform's certificate (and offer the gateway's own), as
companies run them: a private CA, a client certificate."""

from __future__ import annotations

import functools
import ssl

from gateway.config.model import App
from gateway.config.schema import TlsConfig


class TlsSetupError(Exception):
    """A TLS file could not be used; the message names the option."""


def ssl_context(tls: TlsConfig, where: str) -> ssl.SSLContext:
    """The context that checks the platform's certificate (and offers ours)."""
    try:
        if tls.ca_mode == "only":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            context = ssl.create_default_context()
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"{where}.ca_file: cannot use {tls.ca_file} ({_reason(exc)})") from None
    if tls.client_cert is not None and tls.client_key is not None:
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"{where}.client_cert: cannot use {tls.client_cert} with {tls.client_key} "
                f"({_reason(exc)})"
            ) from None
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or getattr(exc, "reason", None) or type(exc).__name__


def own_context(app: App) -> ssl.SSLContext | None:
    """The context the app's TLS files make, if it names any (TlsSetupError if unusable)."""
    tls = app.tls
    if tls.ca_file is None and tls.client_cert is None:
        return None
    return ssl_context(tls, f"apps.{app.name}.tls")


@functools.cache
def default_context() -> ssl.SSLContext:
    # Loading the system's CA store costs tens of milliseconds: once per process.
    return ssl.create_default_context()
