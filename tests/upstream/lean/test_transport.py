"""The lean transport: its pools picked by the app's TLS setting, and each way a call can
fail named as the gateway's error."""

from __future__ import annotations

import asyncio
import gzip
import socket
from typing import Any

import aiohttp
import pytest

from gateway.config.schema import PoolConfig
from gateway.core.errors import (
    UpstreamDnsError,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnreachable,
)
from gateway.upstream.lean.transport import LeanTransport
from gateway.upstream.transport import Answer
from tests.support.pki import Pki
from tests.support.scripted_server import OK, answering, ok, read_request, tls_upstream, upstream
from tests.upstream.helpers import app_for, request_to


@pytest.fixture
async def lean() -> Any:
    transport = LeanTransport(PoolConfig(max_connections=4, keepalive_s=30), connect_s=1)
    yield transport
    transport.close()


async def send(lean: LeanTransport, base: str, **request: Any) -> Answer:
    return await lean.send(request_to(app_for(base), f"{base}/neuopenapi/x?a=1", **request))


async def test_an_answer_comes_decoded_with_the_headers_as_sent(lean: LeanTransport) -> None:
    compressed = ok(gzip.compress(OK), b"Content-Encoding: gzip\r\nKeep-Alive: timeout=5\r\n")
    async with upstream(answering(compressed)) as served:
        answer = await send(lean, served.url)
    assert (answer.status, answer.body) == (200, OK)
    # Relaying rules are the caller's: the transport leaves the headers as they came.
    assert answer.headers["Keep-Alive"] == "timeout=5"


async def test_a_refused_connection_is_unreachable_and_unsent(lean: LeanTransport) -> None:
    async with upstream(answering()) as served:
        closed = served.url
    with pytest.raises(UpstreamUnreachable) as raised:
        await send(lean, closed)
    assert type(raised.value) is UpstreamUnreachable
    assert raised.value.unsent


async def test_a_connection_dropped_after_the_request_is_lost_and_not_unsent(
    lean: LeanTransport,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with upstream(hang_up) as served:
        with pytest.raises(UpstreamUnreachable) as raised:
            await send(lean, served.url, method="POST", body=b"a=1")
    assert not raised.value.unsent
    assert raised.value.msg == UpstreamUnreachable.message


async def test_no_answer_in_the_requests_time_is_a_timeout(lean: LeanTransport) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async with upstream(silent) as served:
        with pytest.raises(UpstreamTimeout):
            await send(lean, served.url, timeout_s=0.05)


async def test_a_name_that_does_not_resolve_is_a_dns_error(
    lean: LeanTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unknown(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", unknown)
    with pytest.raises(UpstreamDnsError, match=r"'platform\.test'") as raised:
        await send(lean, "http://platform.test")
    assert raised.value.unsent


async def test_a_certificate_from_an_unknown_ca_is_a_tls_error(
    lean: LeanTransport, pki: Pki
) -> None:
    async with tls_upstream(pki, answering(ok())) as url:
        with pytest.raises(UpstreamTlsError, match="unknown CA"):
            await send(lean, url)
        app = app_for(url, tls={"ca_file": str(pki.ca)})
        answer = await lean.send(request_to(app, f"{url}/neuopenapi/x"))
    assert answer.body == OK


async def test_tls_files_gone_bad_after_the_start_are_the_gateways_own_failure(
    lean: LeanTransport, tmp_path: Any
) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    app = app_for("https://platform.test", tls={"ca_file": str(broken)})
    with pytest.raises(UpstreamTlsError, match=r"gateway's own TLS setup failed: apps\.demo"):
        await lean.send(request_to(app, "https://platform.test/neuopenapi/x"))


async def test_an_upload_is_not_the_lean_clients_to_send(lean: LeanTransport) -> None:
    with pytest.raises(TypeError, match="uploads go through aiohttp"):
        await send(lean, "http://platform.test", method="POST", body=aiohttp.MultipartWriter())


async def test_a_reload_keeps_the_cap_of_calls_in_flight() -> None:
    """pool is a restart-only setting: after a renew, the calls still in flight count
    against pool.max_connections with the new ones."""
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(ok(extra=b"Connection: close\r\n"))
        await writer.drain()

    lean = LeanTransport(PoolConfig(max_connections=1, keepalive_s=30), connect_s=1)
    async with upstream(held) as served:
        first = asyncio.ensure_future(send(lean, served.url))
        await served.until(lambda: served.connections == 1)
        lean.renew()
        second = asyncio.ensure_future(send(lean, served.url))
        async with asyncio.timeout(5):
            # The second call queues for the slot the first still holds.
            while not any(slots._waiters for slots in lean._slots.values()):  # noqa: ASYNC110
                await asyncio.sleep(0)  # wait-ok: the queue has no event to await
        assert served.connections == 1
        release.set()
        assert (await first).body == OK
        assert (await second).body == OK
        assert served.most_open == 1
    lean.close()
