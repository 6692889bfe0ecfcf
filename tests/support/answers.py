"""Reading the gateway's answers: the platform's envelope and its error code."""

from __future__ import annotations

from typing import Any

import aiohttp


async def envelope_of(response: aiohttp.ClientResponse, status: int, code: str) -> str:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["responseHeader"]["status"] == status
    assert body["response"] is None
    assert body["error"] == code
    assert response.headers["X-Request-Id"]
    message: str = body["responseHeader"]["msg"]
    assert message
    return message


async def error_of(response: Any) -> tuple[int, str, str]:
    """The refusal's status, error code and message, its envelope's status checked."""
    body = await response.json()
    assert body["responseHeader"]["status"] == response.status
    return response.status, body["error"], body["responseHeader"]["msg"]
