"""The gateway and a recording platform double, both real servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from gateway import logs
from gateway.egress.uploads import SPOOL_MEMORY_BYTES
from gateway.runtime.app import create_app
from tests.conftest import GatewayFactory, gateway_config, guarded
from tests.support.answers import envelope_of
from tests.support.paths import CLOSE as CLOSE_PATH
from tests.support.paths import ECHO as ECHO_PATH
from tests.support.paths import TOKEN as TOKEN_PATH
from tests.support.paths import UPLOAD as UPLOAD_PATH
from tests.support.platform_double import APPID, SECRET, PlatformDouble, reference_sign
from tests.support.rawhttp import raw_request

Client = TestClient[Any, Any]
# Not one of the documented endpoints, so forwarded without their parameter rules: the
# mechanics of parsing, signing and relaying are tested here apart from validation.


def signed_by_gateway(platform: PlatformDouble) -> dict[str, str]:
    received = platform.last
    assert received.sign_ok, received.params
    assert received.params["appid"] == APPID
    return received.params


async def test_form_post_is_signed_and_the_answer_relayed(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(
        TOKEN_PATH, data={"code": "abc123", "grantType": "authorization_code", "scope": "user.info"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}
    params = signed_by_gateway(platform)
    assert platform.last.method == "POST"
    assert platform.last.content_type == "application/x-www-form-urlencoded"
    assert {k: params[k] for k in ("code", "grantType", "scope")} == {
        "code": "abc123",
        "grantType": "authorization_code",
        "scope": "user.info",
    }
    assert abs(int(params["timestamp"]) - time.time() * 1000) < 60_000
    assert response.headers["X-Platform"] == "double"
    assert "Keep-Alive" not in response.headers
    assert "Proxy-Authenticate" not in response.headers


async def test_get_carries_params_in_the_query(gateway: Client, platform: PlatformDouble) -> None:
    response = await gateway.get(ECHO_PATH, params={"tradeNo": "T1"})
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert platform.last.method == "GET"
    assert params["tradeNo"] == "T1"
    assert "sign=" in platform.last.query


async def test_post_with_params_in_the_query_sends_them_in_the_form(
    gateway: Client, platform: PlatformDouble
) -> None:
    # The doc's tradeclose sample puts tradeNo in the query string of a POST.
    response = await gateway.post(CLOSE_PATH + "?tradeNo=T9")
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert params["tradeNo"] == "T9"
    assert platform.last.query == ""


async def test_json_body_keeps_literal_numbers_and_joins_lists(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(
        ECHO_PATH,
        data=b'{"amount": 100, "rate": 1.50, "openIds": ["o1", "o2"], "link": null, "ok": true}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert (params["amount"], params["rate"], params["openIds"]) == ("100", "1.50", "o1,o2")
    assert (params["link"], params["ok"]) == ("", "true")


async def test_repeated_keys_across_query_and_body_become_one_value(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(
        ECHO_PATH + "?openIds=a", data=[("openIds", "b"), ("openIds", "c")]
    )
    assert response.status == 200
    assert signed_by_gateway(platform)["openIds"] == "a,b,c"


async def test_empty_values_are_sent_and_signed(gateway: Client, platform: PlatformDouble) -> None:
    response = await gateway.post(ECHO_PATH, data={"link": "", "title": "t"})
    assert response.status == 200
    assert signed_by_gateway(platform)["link"] == ""


TRICKY = "中文 + & = % ?#/ 😀 \u00e9\ue000"


@pytest.mark.parametrize("how", ["form", "query", "json", "multipart"])
async def test_non_ascii_and_reserved_characters_survive(
    gateway: Client, platform: PlatformDouble, how: str
) -> None:
    if how == "form":
        response = await gateway.post(ECHO_PATH, data={"text": TRICKY})
    elif how == "query":
        response = await gateway.get(ECHO_PATH, params={"text": TRICKY})
    elif how == "json":
        response = await gateway.post(ECHO_PATH, json={"text": TRICKY})
    else:
        form = FormData()
        form.add_field("text", TRICKY)
        form.add_field("fileData", b"x", filename="a.bin")
        response = await gateway.post(UPLOAD_PATH, data=form)
    assert response.status == 200
    assert signed_by_gateway(platform)["text"] == TRICKY


class FixedClock:
    def now_ms(self) -> int:
        return 1_700_000_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # wait-ok: this clock's sleep is the real one


async def test_caller_supplied_appid_timestamp_and_sign_are_replaced(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await aiohttp_client(
        guarded(create_app(gateway_config(platform_url), clock=FixedClock()))
    )
    response = await gateway.post(
        ECHO_PATH + "?sign=q",
        data={"appid": "forged", "timestamp": "1", "sign": "forged", "code": "c"},
    )
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert params["appid"] == APPID
    assert params["timestamp"] == "1700000000000"
    assert params["sign"] == reference_sign(
        {"appid": APPID, "code": "c", "timestamp": "1700000000000"}, "demo-secret"
    )
    assert "forged" not in json.dumps(params)


@pytest.mark.parametrize(
    "send",
    [
        pytest.param({"data": {"secret": "x", "code": "c"}}, id="form"),
        pytest.param({"params": {"Secret": "x"}}, id="query, any case"),
        pytest.param({"json": {"secret": "x"}}, id="json"),
    ],
)
async def test_a_caller_secret_is_refused(
    gateway: Client, platform: PlatformDouble, send: dict[str, Any]
) -> None:
    response = await gateway.post(ECHO_PATH, **send)
    message = await envelope_of(response, 400, "secret_param_rejected")
    assert "x" not in message.split()
    assert platform.received == []


def file_form(file_first: bool, blob: bytes) -> FormData:
    form = FormData()
    text_fields = [("title", "receipt"), ("openIds", "o1"), ("openIds", "o2")]
    if not file_first:
        for name, value in text_fields:
            form.add_field(name, value)
    form.add_field(
        "fileData", io.BytesIO(blob), filename="receipt.pdf", content_type="application/pdf"
    )
    if file_first:
        for name, value in text_fields:
            form.add_field(name, value)
    return form


@pytest.mark.parametrize("file_first", [True, False], ids=["file part first", "file part last"])
@pytest.mark.parametrize(
    "size", [10, SPOOL_MEMORY_BYTES * 3], ids=["small file", "spooled to disk"]
)
async def test_multipart_file_is_forwarded_byte_for_byte_and_not_signed(
    gateway: Client, platform: PlatformDouble, file_first: bool, size: int
) -> None:
    blob = os.urandom(size)
    response = await gateway.post(UPLOAD_PATH, data=file_form(file_first, blob))
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert (params["title"], params["openIds"]) == ("receipt", "o1,o2")
    [file] = platform.last.files
    assert (file.name, file.filename, file.content_type) == (
        "fileData",
        "receipt.pdf",
        "application/pdf",
    )
    assert (file.size, file.sha256) == (size, hashlib.sha256(blob).hexdigest())
    assert platform.last.part_order[-1] == "fileData"


async def test_several_file_data_parts_are_all_forwarded_unsigned(
    gateway: Client, platform: PlatformDouble
) -> None:
    form = FormData()
    form.add_field("fileData", b"one", filename="1.txt")
    form.add_field("fileData", b"three", filename="3.png", content_type="image/png")
    form.add_field("title", "t")
    response = await gateway.post(UPLOAD_PATH, data=form)
    assert response.status == 200
    assert signed_by_gateway(platform)["title"] == "t"
    assert [(f.name, f.size) for f in platform.last.files] == [("fileData", 3), ("fileData", 5)]


def _part(name: str, filename: str | None, value: bytes = b"v") -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (f"--b\r\nContent-Disposition: {disposition}\r\n\r\n").encode() + value + b"\r\n"


@pytest.mark.parametrize(
    ("name", "filename", "status", "code"),
    [
        pytest.param(
            "secret", "", 400, "secret_param_rejected", id="secret with an empty filename"
        ),
        pytest.param("Secret", "s.txt", 400, "secret_param_rejected", id="secret as a file"),
        pytest.param("title", "", 400, "invalid_multipart", id="a field with an empty filename"),
        pytest.param("image", "a.png", 400, "invalid_multipart", id="a file not named fileData"),
    ],
)
async def test_only_file_data_may_be_a_file(
    gateway: Client, platform: PlatformDouble, name: str, filename: str, status: int, code: str
) -> None:
    """Any other part is a parameter the platform signs, so it may not pass as a file."""
    body = _part("title", None) + _part(name, filename) + b"--b--\r\n"
    response = await gateway.post(
        UPLOAD_PATH, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    await envelope_of(response, status, code)
    assert platform.received == []


async def test_file_data_without_a_filename_is_still_the_unsigned_file(
    gateway: Client, platform: PlatformDouble
) -> None:
    body = _part("title", None, b"t") + _part("fileData", None, b"raw bytes") + b"--b--\r\n"
    response = await gateway.post(
        UPLOAD_PATH, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status == 200
    assert "fileData" not in signed_by_gateway(platform)
    # Forwarded as a file, named as the platform's own client names one.
    assert [(f.name, f.filename) for f in platform.last.files] == [("fileData", "fileData")]


async def test_oversized_body_is_refused_before_forwarding(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(limits={"max_body_bytes": 1000})
    response = await gateway.post(ECHO_PATH, data={"text": "x" * 2000})
    await envelope_of(response, 413, "body_too_large")
    assert platform.received == []


async def test_oversized_chunked_upload_is_refused(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(limits={"max_body_bytes": 100_000})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"y" * 10_000

    form = FormData()
    form.add_field("fileData", chunks(), filename="big.bin")
    response = await gateway.post(UPLOAD_PATH, data=form)
    await envelope_of(response, 413, "body_too_large")
    assert platform.received == []


async def test_slow_upstream_gets_504_within_the_timeout(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    platform.hang = True
    gateway = await make_gateway(timeouts={"connect_s": 1, "total_s": 0.5})
    started = time.monotonic()
    response = await gateway.post(ECHO_PATH, data={"code": "c"})
    await envelope_of(response, 504, "upstream_timeout")
    assert time.monotonic() - started < 3
    platform.release.set()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_refusing_upstream_gets_502_and_a_log_line_without_the_query(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    gateway = await make_gateway(upstream=f"http://127.0.0.1:{port}")
    response = await gateway.get(ECHO_PATH, params={"accessToken": "tok-123"})
    message = await envelope_of(response, 502, "upstream_unreachable")
    assert "could not be reached" in message
    assert f"upstream GET http://127.0.0.1:{port}{ECHO_PATH} failed" in caplog.text
    assert "tok-123" not in caplog.text
    assert "sign=" not in caplog.text


@contextlib.asynccontextmanager
async def resetting_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Accepts, reads the request, then resets the connection (RST, not FIN)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


@pytest.mark.parametrize(("method", "attempts"), [("POST", 1), ("GET", 3)])
async def test_resetting_upstream_gets_502_and_only_reads_are_retried(
    make_gateway: GatewayFactory, method: str, attempts: int
) -> None:
    """A reset after the request was sent: a POST may have done its work, a GET is asked
    again up to retries.attempts (3) times."""
    async with resetting_server() as (url, seen):
        gateway = await make_gateway(upstream=url)
        response = await gateway.request(method, ECHO_PATH, params={"code": "c"})
        await envelope_of(response, 502, "upstream_unreachable")
        calls = [data for data in seen if data.startswith(f"{method} {ECHO_PATH}".encode())]
        assert len(calls) == attempts
        assert response.headers.get("X-Neu-Attempts") == (str(attempts) if attempts > 1 else None)


async def test_upstream_errors_pass_through_unchanged(
    gateway: Client, platform: PlatformDouble
) -> None:
    platform.status, platform.body = 503, b'{"responseHeader":{"status":503,"msg":"busy"}}'
    response = await gateway.get(ECHO_PATH, params={"tradeNo": "T"})
    assert response.status == 503
    assert await response.read() == platform.body


async def test_compressed_upstream_answer_is_relayed_decoded(
    aiohttp_server: Any, make_gateway: GatewayFactory
) -> None:
    from aiohttp import web

    payload = json.dumps({"responseHeader": {"status": 200, "msg": "OK"}, "response": "z" * 5000})

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(payload.encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_get("/neuopenapi/x", gzipped)
    server = await aiohttp_server(app)
    gateway = await make_gateway(upstream=str(server.make_url("")).rstrip("/"))
    response = await gateway.get("/neuopenapi/x")
    assert await response.text() == payload


async def test_oversized_upstream_answer_is_a_502(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    platform.body = b"x" * 5000
    gateway = await make_gateway(limits={"max_response_bytes": 1000})
    response = await gateway.get(ECHO_PATH)
    message = await envelope_of(response, 502, "upstream_bad_response")
    assert "max_response_bytes" in message


async def test_unknown_app_is_404(gateway: Client, platform: PlatformDouble) -> None:
    response = await gateway.get(ECHO_PATH, headers={"X-Neu-App": "nope"})
    message = await envelope_of(response, 404, "unknown_app")
    assert "'nope'" in message
    assert "demo" in message
    assert platform.received == []


async def test_x_neu_app_picks_the_app(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    from gateway.config.load import from_mapping

    config = from_mapping(
        {
            "apps": {
                "shop": {"appid": "other", "secret_env": "O", "upstream": platform_url},
                "demo": {"appid": APPID, "secret_env": "D", "upstream": platform_url},
            }
        },
        {"O": "other-secret", "D": "demo-secret"},
    )
    gateway = await aiohttp_client(guarded(create_app(config)))
    response = await gateway.get(ECHO_PATH)
    await envelope_of(response, 400, "app_required")
    response = await gateway.get(ECHO_PATH, headers={"X-Neu-App": "demo"})
    assert response.status == 200
    signed_by_gateway(platform)
    response = await gateway.get(ECHO_PATH, headers={"X-Neu-App": "shop"})
    assert platform.last.params["appid"] == "other"
    assert platform.last.params["sign"] == reference_sign(platform.last.params, "other-secret")


async def test_request_id_is_kept_or_made_and_sent_upstream(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.get(ECHO_PATH, headers={"X-Request-Id": "trace-42"})
    assert response.headers["X-Request-Id"] == "trace-42"
    assert platform.last.headers["X-Request-Id"] == "trace-42"
    response = await gateway.get(ECHO_PATH, headers={"X-Request-Id": "bad id\twith tab"})
    made = response.headers["X-Request-Id"]
    assert made != "bad id\twith tab"
    assert len(made) == 32


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(SECRET, id="the app's secret"),
        pytest.param("ab" * 32, id="shaped like a sign"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", id="a JWT"),
    ],
)
async def test_a_request_id_that_looks_like_a_credential_is_replaced(
    gateway: Client, platform: PlatformDouble, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `serve` does: the process's redaction knows the config's secrets.
    monkeypatch.setattr(logs, "REDACTION", logs.RedactingFilter([SECRET]))
    response = await gateway.get(ECHO_PATH, headers={"X-Request-Id": given})
    made = response.headers["X-Request-Id"]
    assert made != given
    assert platform.last.headers["X-Request-Id"] == made


async def test_only_allowed_caller_headers_go_upstream(
    gateway: Client, platform: PlatformDouble
) -> None:
    await gateway.get(
        ECHO_PATH,
        headers={
            "Authorization": "Bearer caller-token",
            "Cookie": "session=1",
            "X-Neu-App": "demo",
            "X-Custom": "1",
            "Accept-Language": "ar_SA",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )
    sent = {name.lower() for name in platform.last.headers}
    assert {"authorization", "cookie", "x-neu-app", "x-custom"}.isdisjoint(sent)
    assert {"accept-language", "traceparent"} <= sent


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        pytest.param(f"PUT {ECHO_PATH}", 405, "method_not_allowed", id="PUT"),
        pytest.param(f"DELETE {ECHO_PATH}", 405, "method_not_allowed", id="DELETE"),
        pytest.param("GET /admin", 404, "not_found", id="outside /neuopenapi/"),
        pytest.param("GET /neuopenapi/a/../b", 400, "invalid_path", id="dot segment"),
        pytest.param("GET /neuopenapi/a/./b", 400, "invalid_path", id="single dot segment"),
        pytest.param("GET /neuopenapi/a/%2e%2e/b", 400, "invalid_path", id="encoded dots"),
        pytest.param("GET /neuopenapi/a%2fb", 400, "invalid_path", id="encoded slash"),
        pytest.param("GET /neuopenapi/a%5cb", 400, "invalid_path", id="encoded backslash"),
        pytest.param("GET /neuopenapi/a//b", 400, "invalid_path", id="double slash"),
        pytest.param("GET /neuopenapi/", 400, "invalid_path", id="no endpoint"),
        pytest.param("GET //evil.example/neuopenapi/x", 404, "not_found", id="scheme-relative"),
        pytest.param(
            "GET http://evil.example/neuopenapi/x", 400, "invalid_path", id="absolute-form target"
        ),
    ],
)
async def test_requests_that_never_reach_the_platform(
    gateway: Client, platform: PlatformDouble, request_line: str, status: int, code: str
) -> None:
    head = f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close".encode()
    got_status, body = await raw_request(gateway.port, head)
    assert (got_status, body["error"], body["responseHeader"]["status"]) == (status, code, status)
    assert platform.received == []


async def test_a_foreign_host_header_changes_nothing(
    gateway: Client, platform: PlatformDouble, platform_server: Any
) -> None:
    head = f"GET {ECHO_PATH} HTTP/1.1\r\nHost: evil.example\r\nConnection: close".encode()
    status, _ = await raw_request(gateway.port, head)
    assert status == 200
    assert platform.last.headers["Host"] == f"127.0.0.1:{platform_server.port}"


async def test_method_not_allowed_names_the_allowed_ones(gateway: Client) -> None:
    response = await gateway.request("PATCH", ECHO_PATH)
    await envelope_of(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(b"hello", "text/plain", 415, "unsupported_media_type", id="text/plain"),
        pytest.param(b'{"a": {"b": 1}}', "application/json", 400, "invalid_json", id="nested JSON"),
        pytest.param(b"{nope", "application/json", 400, "invalid_json", id="broken JSON"),
        pytest.param(
            b"a=%zz", "application/x-www-form-urlencoded", 400, "invalid_params", id="bad escape"
        ),
        pytest.param(
            b"--x\r\nbroken",
            "multipart/form-data; boundary=x",
            400,
            "invalid_multipart",
            id="broken multipart",
        ),
        pytest.param(
            b"--x--\r\n", "multipart/form-data", 400, "invalid_multipart", id="no boundary"
        ),
    ],
)
async def test_unreadable_bodies_get_a_clear_400(
    gateway: Client,
    platform: PlatformDouble,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = await gateway.post(ECHO_PATH, data=body, headers={"Content-Type": content_type})
    await envelope_of(response, status, code)
    assert platform.received == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"tradeNo": "T1"}', id="an object, as curl -d sends it"),
        pytest.param(b'{"url": "https://x/?a=b&c=d", "text": "100%"}', id="with & and %"),
        pytest.param(b'\n  ["a", "b"]', id="a list after whitespace"),
        pytest.param(b"%7B%22tradeNo%22%3A%22T1%22%7D", id="percent-encoded (--data-urlencode)"),
    ],
)
async def test_json_sent_as_a_form_is_refused_with_the_header_to_add(
    gateway: Client, platform: PlatformDouble, body: bytes
) -> None:
    response = await gateway.post(
        ECHO_PATH, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    message = await envelope_of(response, 400, "json_without_content_type")
    assert "add -H 'Content-Type: application/json'" in message
    assert platform.received == []


async def test_a_form_whose_values_hold_json_is_still_a_form(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(ECHO_PATH, data={"extra": '{"a": 1}', "list": "[1]"})
    assert response.status == 200
    assert signed_by_gateway(platform)["extra"] == '{"a": 1}'


async def test_a_file_on_a_get_is_refused(gateway: Client, platform: PlatformDouble) -> None:
    form = FormData()
    form.add_field("fileData", b"x", filename="a.bin")
    response = await gateway.request("GET", UPLOAD_PATH, data=form)
    message = await envelope_of(response, 400, "bad_request")
    assert "POST" in message
    assert platform.received == []


async def test_health(gateway: Client) -> None:
    response = await gateway.get("/healthz")
    assert response.status == 200
    assert (await response.json())["response"] == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_admin_answers_carry_the_request_id_too(gateway: Client, path: str) -> None:
    given = await gateway.get(path, headers={"X-Request-Id": "probe-1"})
    assert given.headers["X-Request-Id"] == "probe-1"
    made = await gateway.get(path)
    assert len(made.headers["X-Request-Id"]) == 32


async def test_non_ascii_names_and_filenames_in_multipart(
    gateway: Client, platform: PlatformDouble
) -> None:
    form = FormData(quote_fields=False)
    form.add_field("标题", "值")
    form.add_field("fileData", b"abc", filename="收据 2024.pdf")
    response = await gateway.post(UPLOAD_PATH, data=form)
    assert response.status == 200
    params = signed_by_gateway(platform)
    assert params["标题"] == "值"
    [file] = platform.last.files
    assert (file.name, file.filename, file.size) == ("fileData", "收据 2024.pdf", 3)


async def raw_upstream(answer: bytes) -> tuple[asyncio.Server, str]:
    """An upstream that reads a request's head and answers with these bytes, then waits."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()  # holds the connection open, as an upgraded one would be
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_an_upstream_101_is_a_502_not_relayed(make_gateway: GatewayFactory) -> None:
    server, url = await raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    async with server:
        gateway = await make_gateway(url)
        async with asyncio.timeout(5):
            response = await gateway.get(ECHO_PATH, params={"a": "1"})
            await envelope_of(response, 502, "upstream_bad_response")


async def test_an_upstream_header_that_is_not_utf8_is_left_behind(
    make_gateway: GatewayFactory,
) -> None:
    body = b'{"responseHeader": {"status": 200, "msg": "OK"}, "response": true}'
    server, url = await raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Odd: caf\xe9\r\n"
        b"X-Fine: yes\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    async with server:
        gateway = await make_gateway(url)
        response = await gateway.get(ECHO_PATH, params={"a": "1"})
        assert response.status == 200
        assert "X-Odd" not in response.headers
        assert response.headers["X-Fine"] == "yes"
