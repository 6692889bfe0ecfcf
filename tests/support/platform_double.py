"""A recording stand-in for the platform, with its own signing code written apart from gateway/.

It checks every sign it receives with an implementation that shares nothing with
gateway.core.signing (UTF-16 code units built by hand, sort by comparison function), records what
arrived, and answers in the platform's envelope. Faults (hang, status) are set per test.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web
from multidict import CIMultiDict

APPID = "demo-appid"
SECRET = "demo-secret"


def utf16_units(text: str) -> list[int]:
    units = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            point -= 0x10000
            units += [0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF)]
        else:
            units.append(point)
    return units


def java_compare(left: str, right: str) -> int:
    a, b = utf16_units(left), utf16_units(right)
    for x, y in zip(a, b, strict=False):
        if x != y:
            return x - y
    return len(a) - len(b)


def reference_sign(params: dict[str, str], secret: str) -> str:
    material = dict(params)
    material.pop("sign", None)
    material.pop("fileData", None)
    material["secret"] = secret
    keys = sorted(material, key=functools.cmp_to_key(java_compare))
    text = "".join(key + "=" + material[key] for key in keys)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ReceivedFile:
    name: str
    filename: str | None
    content_type: str
    size: int
    sha256: str


@dataclass
class Received:
    method: str
    path: str
    query: str
    content_type: str
    headers: CIMultiDict[str]
    params: dict[str, str]
    files: list[ReceivedFile]
    part_order: list[str]
    sign_ok: bool


@dataclass
class PlatformDouble:
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    hang: bool = False
    status: int = 200
    body: bytes | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> Received:
        return self.received[-1]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        # The gateway's start-up probe of its upstream's clock: answered, not recorded.
        app.router.add_get("/", self.probe)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def probe(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"responseHeader": {"status": 404, "msg": "not an API"}})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(
            parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        )
        files: list[ReceivedFile] = []
        order: list[str] = []
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                order.append(part.name or "")
                if part.filename is None and part.name != "fileData":
                    params[part.name or ""] = (await part.read()).decode("utf-8")
                    continue
                digest, size = hashlib.sha256(), 0
                while chunk := await part.read_chunk(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                files.append(
                    ReceivedFile(
                        part.name or "",
                        part.filename,
                        part.headers.get("Content-Type", ""),
                        size,
                        digest.hexdigest(),
                    )
                )
        elif request.method == "POST":
            body = (await request.read()).decode("utf-8")
            params.update(parse_qsl(body, keep_blank_values=True))
        sign_ok = params.get("appid") == APPID and params.get("sign") == reference_sign(
            params, self.secret
        )
        self.received.append(
            Received(
                request.method,
                request.path,
                request.rel_url.raw_query_string,
                request.content_type,
                CIMultiDict(request.headers),
                params,
                files,
                order,
                sign_ok,
            )
        )
        if self.hang:
            await self.release.wait()
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, content_type="application/json")
        if not sign_ok:
            return web.json_response(
                {"responseHeader": {"status": 403, "msg": "sign error"}, "response": None}
            )
        return web.json_response(
            {"responseHeader": {"status": 200, "msg": "OK"}, "response": {"echo": params}},
            status=self.status,
            headers={
                "X-Platform": "double",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
            },
        )
