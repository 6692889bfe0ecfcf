"""Malformed input is a 4xx in the envelope, never a 500; a secret never travels; logs hold."""

from __future__ import annotations

import asyncio

import pytest

from tests.abuse.conftest import StartTarget, Target, assert_refused, exchange, request_bytes
from tests.support.paths import DETAIL
from tests.support.paths import SANDBOX_ECHO as ECHO

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

PAY = "/callbacks/demo/pay"
MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}
CALLER_TOKEN = "orders-token-0123456789abcdef"


def multipart(*parts: bytes) -> bytes:
    return b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"


def text_part(disposition: bytes, value: bytes = b"v", headers: bytes = b"") -> bytes:
    return b"Content-Disposition: form-data; " + disposition + b"\r\n" + headers + b"\r\n" + value


@pytest.mark.parametrize(
    ("part", "code"),
    [
        pytest.param(
            text_part(b'name="title"', headers=b"Content-Type: text/plain; charset=utf-7\r\n"),
            "invalid_multipart",
            id="charset utf-7",
        ),
        pytest.param(
            text_part(b'name="title"', headers=b"Content-Type: text/plain; charset=latin-1\r\n"),
            "invalid_multipart",
            id="charset latin-1",
        ),
        pytest.param(
            text_part(b'name="title"', headers=b"Content-Type: text/plain; charset=bogus\r\n"),
            "invalid_multipart",
            id="an unknown charset",
        ),
        pytest.param(text_part(b'name="ti\xfftle"'), "invalid_multipart", id="0xff in a name"),
        pytest.param(
            text_part(b"name*=utf-8''%FF%FE"), "invalid_multipart", id="encoded 0xff in a name"
        ),
        pytest.param(
            text_part(b'name="fileData"; filename="\xff.bin"'),
            "invalid_multipart",
            id="0xff in a filename",
        ),
        pytest.param(
            text_part(b'name="title"', b"\xff\xfe"), "invalid_multipart", id="a 0xff value"
        ),
        pytest.param(
            text_part(b'name="title"', b"dGl0bGU=", b"Content-Transfer-Encoding: base64\r\n"),
            "invalid_multipart",
            id="base64 transfer encoding",
        ),
        pytest.param(
            text_part(b'name="title"', b"\x1f\x8b", b"Content-Encoding: gzip\r\n"),
            "invalid_multipart",
            id="a compressed part",
        ),
        pytest.param(text_part(b'filename="a"'), "invalid_multipart", id="a part without a name"),
        pytest.param(
            b'Content-Disposition: attachment; name="title"\r\n\r\nv',
            "invalid_multipart",
            id="not form-data",
        ),
        pytest.param(b"no headers at all", "invalid_multipart", id="a part without headers"),
    ],
)
async def test_malformed_multipart_parts(target: Target, part: bytes, code: str) -> None:
    body = multipart(text_part(b'name="ok"'), part)
    async with target.under_abuse(max_growth_mb=8):
        answer = await exchange(target.port, request_bytes("POST", ECHO, body, MULTIPART))
        assert_refused(answer, 400, code)


async def test_malformed_headers_and_params(start_target: StartTarget) -> None:
    target = await start_target(
        env={"ORDERS_TOKEN": CALLER_TOKEN},
        callers="{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']}}",
    )
    good = b"Authorization: Bearer " + CALLER_TOKEN.encode() + b"\r\n"

    def raw(
        target_path: str,
        extra: bytes,
        body: bytes = b"",
        auth: bytes = good,
        content_type: bytes = b"application/x-www-form-urlencoded",
    ) -> bytes:
        method = "GET" if target_path.startswith(DETAIL) else "POST"
        head = f"{method} {target_path} HTTP/1.1\r\nHost: x\r\n".encode() + auth + extra
        if body:
            head += b"Content-Type: " + content_type + b"\r\n"
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    cases = [
        (raw(ECHO, b"", auth=b"Authorization: Bearer \xff" + CALLER_TOKEN.encode() + b"\r\n"), 401),
        (raw(ECHO, b"", auth=b"Authorization: \xc3\x28\r\n"), 401),
        (raw(ECHO, b"X-Neu-App: \xff\xfe\r\n"), 404),
        (raw(f"{DETAIL}?tradeNo=t1&wait=%C2%B2", b""), 400),
        (raw(f"{DETAIL}?tradeNo=t1&wait=99999999999999999999", b""), 400),
        (raw(ECHO, b"", b"a=%zz"), 400),
        (raw(ECHO, b"", b"a=%FF"), 400),
        (raw(ECHO, b"", b"=novalue"), 400),
        (raw(ECHO, b"", b"secret=x"), 400),
        (raw(ECHO, b"", b'{"a":', content_type=b"application/json"), 400),
        (raw(ECHO, b"", b"x", content_type=b"multipart/form-data"), 400),
        (raw(ECHO, b"", b"x", content_type=b"multipart/form-data; boundary=" + b"b" * 80), 400),
        (raw(ECHO, b"", b"x", content_type=b"text/plain"), 415),
    ]
    async with target.under_abuse(max_growth_mb=8):
        for request, status in cases:
            answer = await exchange(target.port, request)
            assert answer is not None, request
            assert answer.status == status, (request, answer)
            assert answer.body["error"]
        # Headers that cannot be forwarded as they came are left behind, not a 500.
        odd = raw(ECHO, b"User-Agent: caf\xe9\r\ntraceparent: \xff\r\n", b"a=1")
        answer = await exchange(target.port, odd)
        assert answer is not None
        assert answer.status == 200, answer


async def test_deep_json_on_both_listeners(target: Target) -> None:
    deep = b'{"a":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    headers = {"Content-Type": "application/json"}
    async with target.under_abuse(max_growth_mb=8):
        for port, path in ((target.port, ECHO), (target.callbacks_port, PAY)):
            answer = await exchange(port, request_bytes("POST", path, deep, headers))
            assert_refused(answer, 400, "invalid_json")


async def test_a_wait_the_platform_does_not_answer_in_is_a_504(target: Target) -> None:
    await exchange(
        target.sandbox_port,
        request_bytes(
            "POST",
            "/sandbox/faults",
            f"path={DETAIL}&hang=true".encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
    )
    try:
        answer = await exchange(target.port, request_bytes("GET", f"{DETAIL}?tradeNo=t1&wait=1"))
        assert_refused(answer, 504, "upstream_timeout")
    finally:
        await exchange(target.sandbox_port, request_bytes("DELETE", "/sandbox/faults"))


@pytest.mark.parametrize(
    "part",
    [
        pytest.param(text_part(b'name="secret"; filename=""', b"s3cr3t"), id="empty filename"),
        pytest.param(text_part(b'name="SECRET"; filename="s.txt"', b"s3cr3t"), id="as a file"),
        pytest.param(text_part(b"name*=utf-8''secret", b"s3cr3t"), id="extended name"),
        pytest.param(text_part(b'name="secret"', b"s3cr3t"), id="a plain field"),
    ],
)
async def test_a_secret_never_travels(target: Target, part: bytes) -> None:
    calls_before = await sandbox_calls(target)
    body = multipart(text_part(b'name="title"'), part)
    answer = await exchange(target.port, request_bytes("POST", ECHO, body, MULTIPART))
    assert_refused(answer, 400, "secret_param_rejected")
    assert await sandbox_calls(target) == calls_before


async def sandbox_calls(target: Target) -> dict[str, int]:
    """The calls the sandbox has seen, by path (the module's earlier tests made some)."""
    stats = await exchange(target.sandbox_port, request_bytes("GET", "/sandbox/stats"))
    assert stats is not None
    calls: dict[str, int] = stats.body["response"]["calls"]
    return calls


async def test_a_field_may_not_pass_as_a_file(target: Target) -> None:
    """The platform reads `filename=""` as a plain field: it would arrive unsigned."""
    body = multipart(text_part(b'name="title"; filename=""', b"t"))
    answer = await exchange(target.port, request_bytes("POST", ECHO, body, MULTIPART))
    assert_refused(answer, 400, "invalid_multipart")
    assert "fileData" in answer.body["responseHeader"]["msg"]  # type: ignore[union-attr]


FORGED = "2026-11-28 00:00:00,000 INFO neu_gateway.delivery delivered"


@pytest.mark.parametrize(
    "separator", ["%0A", "%0D", "%0D%0A", "%E2%80%A8", "%1B%5B2K%0D", "%C2%85"], ids=repr
)
async def test_log_lines_cannot_be_forged_from_the_network(target: Target, separator: str) -> None:
    forged = FORGED.replace(" ", "%20")
    callback = request_bytes("POST", f"/callbacks/demo{separator}{forged}/pay", b"tradeNo=1")
    assert_refused(await exchange(target.callbacks_port, callback), 404, "unknown_app")
    await target.process.wait_for_log("refused a payment callback for app demo", since=target.mark)
    for line in target.process.log_lines:
        assert not line.startswith(FORGED[:20]), line
        assert not any(ch in line for ch in "\r\x1b\x85\u2028"), line


async def test_credentials_in_upstream_urls_are_redacted_at_debug(target: Target) -> None:
    """The gateway runs at DEBUG here, where each upstream URL is logged."""
    values = {
        "phoneNumber": "13800138000",
        "authCode": "auth-code-value-1",
        "refreshToken": "refresh-value-2",
        "client_secret_hint": "hint-value-3",
    }
    query = "&".join(f"{key}={value}" for key, value in values.items())
    answer = await exchange(target.port, request_bytes("GET", f"{ECHO}?{query}"))
    assert answer is not None
    assert answer.status == 200, answer
    await target.process.wait_for_log("upstream GET", since=target.mark)
    for value in values.values():
        assert value not in target.process.log


async def test_bad_content_dispositions_leave_nothing_behind(target: Target) -> None:
    """aiohttp warns of each one, quoting it; remembered warnings would be a memory leak."""
    lines_before = len(target.process.log_lines)
    async with target.under_abuse(max_growth_mb=10):
        for i in range(2000):
            junk = b"%d" % i + b"x" * 7000
            part = b'Content-Disposition: form-data; name="a"; name="' + junk + b'"\r\n\r\nv'
            answer = await exchange(
                target.port, request_bytes("POST", ECHO, multipart(part), MULTIPART)
            )
            assert_refused(answer, 400, "invalid_multipart")
    # One access line per request (beside the probes of both listeners), nothing quoting the junk.
    new_lines = [
        line for line in target.process.log_lines[lines_before:] if "path=/healthz" not in line
    ]
    assert len(new_lines) <= 2000 + 10
    assert not any("xxxxxxxxxx" in line for line in new_lines)


async def test_a_client_that_leaves_mid_body_is_no_error(target: Target) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(
        request_bytes(
            "POST",
            ECHO,
            b"a=12345",
            {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "1000"},
        )
    )
    await writer.drain()
    writer.transport.abort()
    # Its handler is stopped as it leaves, and the request logged as nginx does.
    await target.process.wait_for_log("status=499 path=/neuopenapi/sandbox/echo", since=target.mark)
    assert "Traceback" not in target.process.log_since(target.mark)
    assert " ERROR " not in target.process.log_since(target.mark)


async def test_a_long_query_reaches_the_platform_and_its_answer_is_json(target: Target) -> None:
    value = "x" * 12_000
    answer = await exchange(target.port, request_bytes("GET", f"{ECHO}?title={value}"))
    assert answer is not None
    assert answer.status == 200, answer
    assert answer.body["response"]["params"]["title"] == value
