"""Bytes on a socket, for requests an HTTP client library would normalise before sending."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send one request as given; return the status and the JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.split(b"\r\n\r\n", 1)[1]
    return int(status_line.split()[1]), json.loads(payload)
