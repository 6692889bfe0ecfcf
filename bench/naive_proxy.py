"""The baseline: the signing proxy a team would write in an afternoon (aiohttp + uvloop).

It parses the query and a form body, signs with the platform's rule, forwards with one pooled
ClientSession and relays the answer. No callers, validation, limits, metrics or logs.

Usage: python bench/naive_proxy.py UPSTREAM_BASE_URL  (prints `naive listening on http://...`)
"""

from __future__ import annotations

import hashlib
import sys
import time
from urllib.parse import urlencode

import aiohttp
import uvloop
from aiohttp import web

APPID, SECRET = "demo-appid", "demo-secret"


def sign(params: dict[str, str]) -> str:
    fields = {**params, "secret": SECRET}
    text = "".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "sign")
    return hashlib.sha256(text.encode()).hexdigest()


async def forward(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST":
        params.update(await request.post())  # type: ignore[arg-type]
    params["appid"], params["timestamp"] = APPID, str(int(time.time() * 1000))
    params["sign"] = sign(params)
    session: aiohttp.ClientSession = request.app["session"]
    url = request.app["upstream"] + request.path
    if request.method == "GET":
        call = session.get(url + "?" + urlencode(params))
    else:
        call = session.post(url, data=urlencode(params).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    async with call as response:
        return web.Response(
            status=response.status, body=await response.read(), content_type="application/json"
        )


async def main() -> None:
    app = web.Application()
    app["upstream"] = sys.argv[1].rstrip("/")
    app["session"] = aiohttp.ClientSession()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port, *_ = runner.addresses[0]
    print(f"naive listening on http://{host}:{port}", flush=True)
    await asyncio_forever()


async def asyncio_forever() -> None:
    import asyncio

    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
