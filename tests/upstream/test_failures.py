"""How a call that got no answer is told, whichever transport made it."""

from __future__ import annotations

import logging
import ssl

import pytest
from yarl import URL

from gateway.core.errors import UpstreamTlsError, UpstreamUnreachable
from gateway.upstream.failures import (
    certificate_problem,
    log_failure,
    lost,
    own_tls_failed,
    ssl_reason,
)
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.transport import Request
from tests.upstream.helpers import app_for, request_to

ALERT = ssl.SSLError(
    1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"
)


def request(url: str) -> Request:
    return request_to(app_for(str(URL(url).origin())), url)


def behind(cause: BaseException) -> OSError:
    error = ConnectionResetError(104, "Connection reset by peer")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("exc", "url", "reused", "kind", "says"),
    [
        pytest.param(
            ALERT, "https://p.test/x", False, UpstreamTlsError, "requires a client", id="alert"
        ),
        pytest.param(
            ALERT, "https://p.test/x", True, UpstreamUnreachable, "TLS connection", id="reused"
        ),
        pytest.param(
            behind(ssl.SSLError(1, "[SSL] bad record mac")),
            "https://p.test/x",
            False,
            UpstreamUnreachable,
            "TLS connection with the platform broke",
            id="TLS behind a reset",
        ),
        pytest.param(
            ConnectionResetError(),
            "https://p.test/x",
            False,
            UpstreamUnreachable,
            "tls.client_cert",
            id="https dropped at once",
        ),
        pytest.param(
            ConnectionResetError(),
            "https://p.test/x",
            True,
            UpstreamUnreachable,
            "could not be reached",
            id="https dropped after answers",
        ),
        pytest.param(
            ConnectionResetError(),
            "http://p.test/x",
            False,
            UpstreamUnreachable,
            "could not be reached",
            id="http",
        ),
    ],
)
def test_a_connection_that_ended_without_an_answer_is_told_by_its_likeliest_cause(
    exc: BaseException, url: str, reused: bool, kind: type[UpstreamUnreachable], says: str
) -> None:
    error = lost(request(url), exc, reused)
    assert type(error) is kind
    assert says in error.msg
    assert not error.unsent


@pytest.mark.parametrize(
    ("verify_message", "says"),
    [
        pytest.param("certificate has expired", "it has expired", id="expired"),
        pytest.param("Hostname mismatch, certificate is not valid for 'x'", "host name", id="name"),
        pytest.param("self-signed certificate in certificate chain", "unknown CA", id="self"),
        pytest.param("unable to get local issuer certificate", "unknown CA", id="issuer"),
        pytest.param("certificate revoked", "could not be verified", id="other"),
    ],
)
def test_a_refused_certificate_says_why_and_what_to_set(verify_message: str, says: str) -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = verify_message
    message = certificate_problem(error)
    assert message.startswith("the platform's TLS certificate was refused: ")
    assert says in message
    assert verify_message in message


def test_a_handshake_failure_names_its_reason_or_the_missing_client_certificate() -> None:
    plain = ssl.SSLError(1, "handshake failure")
    plain.reason = "SSLV3_ALERT_HANDSHAKE_FAILURE"
    assert ssl_reason(plain) == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    assert "set tls.client_cert and tls.client_key" in ssl_reason(ALERT)

    class Wrapped(Exception):
        os_error = plain

    assert ssl_reason(Wrapped()) == "SSLV3_ALERT_HANDSHAKE_FAILURE"


def test_the_gateways_own_tls_files_are_named_as_its_own_failure() -> None:
    error = own_tls_failed(TlsSetupError("apps.demo.tls.ca_file: cannot use /x (No such file)"))
    assert type(error) is UpstreamTlsError
    assert error.msg == (
        "the gateway's own TLS setup failed: apps.demo.tls.ca_file: cannot use /x (No such file)"
    )


def test_a_failure_is_logged_without_the_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "neu_gateway.upstream")
    url = URL("http://p.test/neuopenapi/x?accessToken=tok-1&sign=abc", encoded=True)
    log_failure("GET", url, TimeoutError())
    assert "upstream GET http://p.test/neuopenapi/x failed: TimeoutError" in caplog.text
    assert "tok-1" not in caplog.text
    assert "sign" not in caplog.text
