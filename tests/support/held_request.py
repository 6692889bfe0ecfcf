"""A request the gateway has admitted and whose body the test holds back: what a reload or a
rotation does to a request in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient


@dataclass
class HeldRequest:
    """`admitted` is set once the gateway has admitted the request (its 100 Continue came);
    its body is sent when `release` is set; `response` is the answer."""

    admitted: asyncio.Event
    release: asyncio.Event
    response: asyncio.Future[aiohttp.ClientResponse]


async def post_held(gateway: TestClient[Any, Any], path: str) -> HeldRequest:
    """A form POST of `x=1` to `path`, held after admission; returns once it is admitted."""
    admitted, release = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        # Sent only after the gateway's 100 Continue: the request is admitted by then.
        admitted.set()
        await release.wait()
        yield b"x=1"

    response = asyncio.ensure_future(
        gateway.post(
            path,
            data=body(),
            expect100=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "3"},
        )
    )
    await admitted.wait()
    return HeldRequest(admitted, release, response)
