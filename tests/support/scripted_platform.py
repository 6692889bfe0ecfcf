"""A platform whose answers a test scripts one by one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

OK = b'{"responseHeader": {"status": 200, "msg": "OK"}, "response": {"tradeNo": "T"}}'
BUSY = b'{"responseHeader": {"status": 503, "msg": "busy"}, "response": null}'


@dataclass
class Scripted:
    """A platform that answers each call with the next status of its script (then 200)."""

    script: list[int] = field(default_factory=list)
    received: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/":
            return web.Response(status=404)
        params = dict(parse_qsl(request.rel_url.raw_query_string))
        if request.method == "POST":
            params.update(parse_qsl((await request.read()).decode()))
        self.received.append(params)
        status = self.script.pop(0) if self.script else 200
        return web.Response(
            status=status, body=OK if status == 200 else BUSY, content_type="application/json"
        )


async def serve_scripted(aiohttp_server: Any) -> tuple[Scripted, str]:
    """A scripted platform on a loopback port, and its base URL."""
    scripted = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    server = await aiohttp_server(app)
    return scripted, str(server.make_url("")).rstrip("/")
