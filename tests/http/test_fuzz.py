"""Arbitrary bytes and params into the real server's parsers: never a 5xx, a crash or a hang.

The gateway and a trivial upstream run on loopback in a thread of their own for the whole
module, so hypothesis can send hundreds of requests with a plain blocking client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.http.keys import CONFIG
from gateway.http.server import GuardedRunner
from gateway.runtime.app import create_app
from gateway.runtime.keys import CALLBACKS_URL
from gateway.runtime.listeners import connection_limits
from tests.conftest import gateway_config
from tests.support.paths import ECHO, NOTIFY, USER_INFO

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATHS = [
    ECHO,
    NOTIFY,
    USER_INFO,
]


async def _accept_anything(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"responseHeader": {"status": 200, "msg": "OK"}, "response": True})


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """The gateway's two listeners: `gateway` (callers) and `callbacks` (the platform)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}
    outbox = tmp_path_factory.mktemp("fuzz") / "outbox.db"

    async def serve() -> None:
        upstream_app = web.Application(client_max_size=1 << 26)
        upstream_app.router.add_route("*", "/{tail:.*}", _accept_anything)
        upstream = web.AppRunner(upstream_app)
        await upstream.setup()
        await web.TCPSite(upstream, "127.0.0.1", 0).start()
        upstream_port = upstream.addresses[0][1]
        config = gateway_config(
            f"http://127.0.0.1:{upstream_port}",
            callbacks={"listen": {"port": 0}, "store": f"sqlite://{outbox}"},
        )
        app = create_app(config)
        gateway = GuardedRunner(app, connection_limits(app[CONFIG]))
        await gateway.setup()
        await web.TCPSite(gateway, "127.0.0.1", 0).start()
        state["ports"] = {
            "gateway": gateway.addresses[0][1],
            "callbacks": URL(app[CALLBACKS_URL]).port,
        }
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await gateway.cleanup()
        await upstream.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20), "the gateway did not start"
    yield state["ports"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(20)
    loop.close()


@pytest.fixture(scope="module")
def port(ports: dict[str, int]) -> int:
    return ports["gateway"]


def send(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_handled(status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    if status >= 400:
        envelope = json.loads(body)
        assert envelope["responseHeader"]["status"] == status
        assert envelope["error"]


content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
    ]
)


@FUZZ
@given(st.sampled_from(PATHS), content_types, st.binary(max_size=2000))
def test_arbitrary_bodies(port: int, path: str, content_type: str, body: bytes) -> None:
    assert_handled(*send(port, "POST", path, body, {"Content-Type": content_type}))


@FUZZ
@given(st.sampled_from(PATHS), st.binary(max_size=300))
def test_arbitrary_query_strings(port: int, path: str, raw: bytes) -> None:
    # '%', '&', '=' and '+' stay raw, so broken escapes and odd pairs reach the parser.
    assert_handled(*send(port, "GET", f"{path}?{quote(raw, safe='%&=+')}"))


params = st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=10)


@FUZZ
@given(st.sampled_from(PATHS), params, st.sampled_from(["form", "json", "query"]))
def test_arbitrary_params(port: int, path: str, fields: dict[str, str], how: str) -> None:
    if how == "query":
        assert_handled(*send(port, "GET", f"{path}?{urlencode(fields)}"))
    elif how == "json":
        body = json.dumps(fields).encode()
        assert_handled(*send(port, "POST", path, body, {"Content-Type": "application/json"}))
    else:
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert_handled(*send(port, "POST", path, body, headers))


parts = st.lists(
    st.tuples(
        st.text(max_size=15),
        st.one_of(st.none(), st.text(max_size=15)),
        st.binary(max_size=300),
    ),
    max_size=6,
)


@FUZZ
@given(parts, st.booleans())
def test_arbitrary_multipart(
    port: int, body_parts: list[tuple[str, str | None, bytes]], close: bool
) -> None:
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, data in body_parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(
            "utf-8", "replace"
        )
        body += data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert_handled(*send(port, "POST", ECHO, body, headers))


# Part headers as attackers write them: names and filenames of any bytes, any charset and
# transfer encoding, odd or repeated headers.
header_names = st.sampled_from(
    [b"Content-Type", b"Content-Transfer-Encoding", b"Content-Encoding", b"X-Other"]
)
header_values = st.one_of(
    st.sampled_from(
        [
            b"text/plain; charset=utf-8",
            b"text/plain; charset=utf-7",
            b"text/plain; charset=latin-1",
            b"text/plain; charset=\xff",
            b"text/plain; charset=",
            b"application/octet-stream",
            b"multipart/mixed; boundary=zz",
            b"base64",
            b"quoted-printable",
            b"8bit",
            b"gzip",
        ]
    ),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
raw_names = st.one_of(
    st.sampled_from([b"fileData", b"secret", b"SECRET", b"title", b""]),
    st.binary(max_size=20).filter(lambda b: not set(b) & set(b'"\r\n')),
)
dispositions = st.builds(
    lambda name, filename, star: (
        (b"name*=utf-8''" + name if star else b'name="' + name + b'"')
        + (b'; filename="' + filename + b'"' if filename is not None else b"")
    ),
    raw_names,
    st.one_of(st.none(), raw_names),
    st.booleans(),
)
raw_parts = st.lists(
    st.tuples(
        dispositions,
        st.lists(st.tuples(header_names, header_values), max_size=3),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(raw_parts, st.booleans())
def test_arbitrary_multipart_headers(
    port: int, parts: list[tuple[bytes, list[tuple[bytes, bytes]], bytes]], secret_first: bool
) -> None:
    body = b""
    for disposition, headers, data in parts:
        body += b"--xyz\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        body += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        body += b"\r\n" + data + b"\r\n"
    body += b"--xyz--\r\n"
    status, answer = send(
        port,
        "POST",
        ECHO,
        body,
        {"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert_handled(status, answer)
    if any(b"secret" in disposition.lower() for disposition, _, _ in parts):
        assert status >= 400 or b"secret" not in answer.lower()


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
nested_json = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(
    st.sampled_from(["gateway", "callbacks"]),
    st.one_of(nested_json, st.dictionaries(st.text(max_size=8), nested_json, max_size=5)),
    st.integers(min_value=0, max_value=3000),
)
def test_nested_json_on_both_listeners(
    ports: dict[str, int], listener: str, document: Any, extra_depth: int
) -> None:
    """Any JSON, and JSON buried under thousands of lists, is a clear 4xx where refused."""
    body = json.dumps(document).encode()
    if extra_depth:
        body = b'{"a":' + b"[" * extra_depth + body + b"]" * extra_depth + b"}"
    path = ECHO if listener == "gateway" else "/callbacks/demo/pay"
    status, answer = send(ports[listener], "POST", path, body, {"Content-Type": "application/json"})
    assert_handled(status, answer)


@FUZZ
@given(content_types, st.binary(max_size=2000), st.sampled_from(["demo", "x", "%0A", "d%FFemo"]))
def test_arbitrary_callback_bodies(
    ports: dict[str, int], content_type: str, body: bytes, app: str
) -> None:
    status, answer = send(
        ports["callbacks"], "POST", f"/callbacks/{app}/pay", body, {"Content-Type": content_type}
    )
    assert_handled(status, answer)
