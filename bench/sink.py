"""A minimal stand-in platform for benchmarks: reads whatever arrives, answers OK.

Usage: python bench/sink.py  (prints `sink listening on http://127.0.0.1:PORT`)
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

OK = {"responseHeader": {"status": 200, "msg": "OK"}, "response": True}


async def swallow(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    async for chunk in request.content.iter_chunked(1 << 16):
        digest.update(chunk)
    return web.json_response({**OK, "bodySha256": digest.hexdigest()})


async def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", swallow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port, *_ = runner.addresses[0]
    print(f"sink listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
