"""How a failed call is told, in the same words whichever transport made it: a connection
that ended without an answer, a refused certificate, the gateway's own TLS files."""

from __future__ import annotations

import ssl

from yarl import URL

from gateway import logs
from gateway.core.errors import UpstreamTlsError, UpstreamUnreachable
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.transport import Request

log = logs.logger("neu_gateway.upstream")


def lost(request: Request, exc: BaseException, reused: bool = False) -> UpstreamUnreachable:
    """The error for a connection that ended without an answer; `reused`: it had carried
    answers before, so whatever ended it, its handshake was fine."""
    tls_error = _tls_error(exc)
    if tls_error is not None:
        reason = ssl_reason(tls_error)
        if not reused and "ALERT" in str(tls_error).upper():
            # The peer's alert on a first exchange is the handshake's verdict: TLS 1.3 tells
            # of a refused client certificate only once data flows.
            return UpstreamTlsError(f"the TLS handshake with the platform failed ({reason})")
        return UpstreamUnreachable(f"the TLS connection with the platform broke ({reason})")
    if request.url.scheme == "https" and request.app.tls.client_cert is None and not reused:
        # A server that wants a client certificate often just drops the connection
        # (the alert lost in a reset), so this is the likeliest reason to name.
        return UpstreamUnreachable(
            "the platform closed the connection without an answer; if it requires a "
            "client certificate (mutual TLS), set tls.client_cert and tls.client_key"
        )
    return UpstreamUnreachable()


def _tls_error(exc: BaseException) -> BaseException | None:
    """The TLS error behind a failed read, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def certificate_problem(error: BaseException) -> str:
    reason = getattr(error, "verify_message", None) or str(error)
    lowered = reason.lower()
    if "expired" in lowered:
        kind = "it has expired"
    elif "hostname mismatch" in lowered or "not valid for" in lowered:
        kind = "it is not for this host name (tls.server_name sets the name to check)"
    elif "issuer" in lowered or "self-signed" in lowered or "self signed" in lowered:
        kind = "it is signed by an unknown CA (tls.ca_file adds a CA to trust)"
    else:
        kind = "it could not be verified"
    return f"the platform's TLS certificate was refused: {kind} ({reason})"


def ssl_reason(exc: BaseException) -> str:
    # aiohttp's connector errors carry the ssl module's error as `os_error`.
    cause = getattr(exc, "os_error", exc)
    reason = getattr(cause, "reason", None) or str(cause)
    if "CERTIFICATE_REQUIRED" in str(reason).upper() or "CERTIFICATE_REQUIRED" in str(exc).upper():
        return "the platform requires a client certificate: set tls.client_cert and tls.client_key"
    return str(reason)


def own_tls_failed(exc: TlsSetupError) -> UpstreamTlsError:
    # A file that went bad after the start (or the last reload).
    return UpstreamTlsError(f"the gateway's own TLS setup failed: {exc}")


def log_failure(method: str, url: URL, exc: BaseException) -> None:
    # The query is left out: it holds the sign and, for user/info, an accessToken.
    log.warning("upstream %s %s failed: %s", method, url.with_query(None), type(exc).__name__)
