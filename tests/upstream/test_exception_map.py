"""Every exception aiohttp's client can raise becomes a gateway error, on purpose.

The test walks aiohttp.ClientError's subclasses (and ssl.SSLError's, and the timeouts), as
httpx's test_httpcore_all_exceptions_mapped does: a class a future aiohttp adds is missing
from EXPECTED and fails here until someone decides what it means and maps it.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.core.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamDnsError,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnreachable,
)
from gateway.upstream.aiohttp_transport import gateway_error
from gateway.upstream.transport import Request
from tests.conftest import gateway_config

URL_ = URL("http://platform.test:8080/neuopenapi/x")

# Per class: the gateway error it becomes (its exact class), and whether it says that no
# byte of the request left (unsent, so a POST may go again).
EXPECTED: dict[str, tuple[type[GatewayError], bool]] = {
    # Before an answer: the connection could not be made.
    "aiohttp.ClientConnectorError": (UpstreamUnreachable, True),
    "aiohttp.UnixClientConnectorError": (UpstreamUnreachable, True),
    "aiohttp.ClientProxyConnectionError": (UpstreamUnreachable, True),
    "aiohttp.ClientConnectorDNSError": (UpstreamDnsError, True),
    "aiohttp.ClientSSLError": (UpstreamTlsError, False),
    "aiohttp.ClientConnectorSSLError": (UpstreamTlsError, False),
    "aiohttp.ClientConnectorCertificateError": (UpstreamTlsError, False),
    "aiohttp.ClientHttpProxyError": (UpstreamUnreachable, True),
    # Out of time.
    "aiohttp.ServerTimeoutError": (UpstreamTimeout, False),
    "aiohttp.ConnectionTimeoutError": (UpstreamTimeout, False),
    "aiohttp.SocketTimeoutError": (UpstreamTimeout, False),
    # An answer came that cannot be relayed.
    "aiohttp.ClientResponseError": (UpstreamBadResponse, False),
    "aiohttp.ContentTypeError": (UpstreamBadResponse, False),
    "aiohttp.WSServerHandshakeError": (UpstreamBadResponse, False),
    "aiohttp.TooManyRedirects": (UpstreamBadResponse, False),
    "aiohttp.ClientPayloadError": (UpstreamBadResponse, False),
    # The connection ended without an answer (or the request could not go).
    "aiohttp.ClientError": (UpstreamUnreachable, False),
    "aiohttp.ClientConnectionError": (UpstreamUnreachable, False),
    "aiohttp.ClientConnectionResetError": (UpstreamUnreachable, False),
    "aiohttp.ClientOSError": (UpstreamUnreachable, False),
    "aiohttp.ServerConnectionError": (UpstreamUnreachable, False),
    "aiohttp.ServerDisconnectedError": (UpstreamUnreachable, False),
    "aiohttp.ServerFingerprintMismatch": (UpstreamUnreachable, False),
    "aiohttp.UploadAbortedError": (UpstreamUnreachable, False),
    "aiohttp.InvalidURL": (UpstreamUnreachable, False),
    "aiohttp.InvalidUrlClientError": (UpstreamUnreachable, False),
    "aiohttp.RedirectClientError": (UpstreamUnreachable, False),
    "aiohttp.NonHttpUrlClientError": (UpstreamUnreachable, False),
    "aiohttp.InvalidUrlRedirectClientError": (UpstreamUnreachable, False),
    "aiohttp.NonHttpUrlRedirectClientError": (UpstreamUnreachable, False),
    # The ssl module's own, as they come through a read: the TLS connection broke.
    "ssl.SSLError": (UpstreamUnreachable, False),
    "ssl.SSLZeroReturnError": (UpstreamUnreachable, False),
    "ssl.SSLWantReadError": (UpstreamUnreachable, False),
    "ssl.SSLWantWriteError": (UpstreamUnreachable, False),
    "ssl.SSLSyscallError": (UpstreamUnreachable, False),
    "ssl.SSLEOFError": (UpstreamUnreachable, False),
    "ssl.SSLCertVerificationError": (UpstreamUnreachable, False),
    # The timeouts asyncio and aiohttp raise as such.
    "asyncio.TimeoutError": (UpstreamTimeout, False),
}

STATUS = {UpstreamTimeout: 504}


def _name(cls: type[BaseException]) -> str:
    module = cls.__module__.split(".")[0]
    module = "asyncio" if cls is asyncio.TimeoutError else module
    return f"{module}.{cls.__qualname__}"


def _walk(root: type[BaseException]) -> list[type[BaseException]]:
    found, queue = [root], [root]
    while queue:
        for sub in queue.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                queue.append(sub)
    return found


def _raised() -> list[type[BaseException]]:
    """aiohttp's client errors, the ssl module's, and the timeouts. (Subclasses other
    libraries in this process define are theirs to map; aiohttp never raises them.)"""
    classes = _walk(aiohttp.ClientError) + _walk(ssl.SSLError) + [asyncio.TimeoutError]
    unique = list(dict.fromkeys(classes))
    return [cls for cls in unique if cls.__module__.split(".")[0] in ("aiohttp", "ssl", "builtins")]


CONNECTION_KEY = ConnectionKey("platform.test", 8080, False, True, None, None, None)
REQUEST_INFO = RequestInfo(URL_, "GET", CIMultiDictProxy(CIMultiDict()), URL_)
# What each constructor argument is given, by its name.
ARGUMENTS: dict[str, Any] = {
    "connection_key": CONNECTION_KEY,
    "os_error": ConnectionRefusedError(111, "Connection refused"),
    "certificate_error": ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    ),
    "request_info": REQUEST_INFO,
    "history": (),
    "expected": b"\x01" * 32,
    "got": b"\x02" * 32,
    "host": "platform.test",
    "port": 8080,
    "url": URL_,
    "description": "not a URL",
    "path": "/run/platform.sock",
}


def _construct(cls: type[BaseException]) -> BaseException:
    """An instance made as aiohttp makes it: each required argument given by its name."""
    if not issubclass(cls, aiohttp.ClientError):
        return cls(1, f"{cls.__name__} from the test")
    try:
        parameters = inspect.signature(cls).parameters
    except ValueError:
        # Exception's own constructor, which takes anything: made bare, as aiohttp raises it.
        return cls()
    arguments: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in ARGUMENTS:
            arguments[name] = ARGUMENTS[name]
        elif name == "status" and issubclass(cls, aiohttp.ClientResponseError):
            arguments[name] = 407
        elif parameter.default is parameter.empty:
            pytest.fail(f"{cls.__name__}({name}=...): teach ARGUMENTS how to build it")
    return cls(**arguments)


def _request(url: URL = URL_, **tls: Any) -> Request:
    app = gateway_config(str(url.origin()), apps=_apps(url, tls)).apps["demo"]
    return Request(app, "GET", url, CIMultiDict(), None, 5.0, 1 << 20)


def _apps(url: URL, tls: dict[str, Any]) -> dict[str, Any]:
    demo: dict[str, Any] = {
        "appid": "a",
        "secret_env": "DEMO_SECRET",
        "upstream": str(url.origin()),
    }
    if tls:
        demo["tls"] = tls
    return {"demo": demo}


@pytest.mark.parametrize("cls", _raised(), ids=_name)
def test_every_client_exception_maps_to_a_gateway_error(cls: type[BaseException]) -> None:
    name = _name(cls)
    if name not in EXPECTED:
        pytest.fail(f"{name} is new: decide what it means, map it in gateway_error, add it here")
    expected, unsent = EXPECTED[name]
    error = gateway_error(_construct(cls), _request())  # type: ignore[arg-type]
    assert type(error) is expected, f"{name} became {type(error).__name__}"
    assert error.status == STATUS.get(expected, 502)
    assert getattr(error, "unsent", False) is unsent
    # A fixed message of the gateway's, not the library's text echoed.
    assert error.msg
    assert "Traceback" not in error.msg


def test_the_table_names_no_class_this_aiohttp_lacks() -> None:
    """A class aiohttp dropped leaves the table, so it stays a map of what can happen."""
    names = {_name(cls) for cls in _raised()}
    assert set(EXPECTED) - names == set()


def test_the_messages_name_what_to_check() -> None:
    request = _request()
    proxy_down = _construct(aiohttp.ClientProxyConnectionError)
    assert "check proxy" in gateway_error(proxy_down, request).msg  # type: ignore[arg-type]
    refused = _construct(aiohttp.ClientHttpProxyError)
    assert "HTTP 407" in gateway_error(refused, request).msg  # type: ignore[arg-type]
    dns = _construct(aiohttp.ClientConnectorDNSError)
    assert "'platform.test'" in gateway_error(dns, request).msg  # type: ignore[arg-type]
    certificate = _construct(aiohttp.ClientConnectorCertificateError)
    message = gateway_error(certificate, request).msg  # type: ignore[arg-type]
    assert "unknown CA (tls.ca_file" in message


def test_a_tls_alert_on_a_first_exchange_is_the_handshakes_verdict() -> None:
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert")
    error = gateway_error(alert, _request())
    assert type(error) is UpstreamTlsError
    assert "requires a client certificate" in error.msg


def test_an_https_connection_dropped_without_a_word_suggests_a_client_certificate() -> None:
    https = URL("https://platform.test/neuopenapi/x")
    dropped = aiohttp.ServerDisconnectedError()
    assert "tls.client_cert" in gateway_error(dropped, _request(https)).msg
    assert gateway_error(dropped, _request(URL_)).msg == UpstreamUnreachable.message
