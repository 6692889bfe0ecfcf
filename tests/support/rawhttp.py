"""Bytes on a socket, for requests an HTTP client library would normalise before sending."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send one request as given; return the status and the JSON body of the answer.

    The answer is read by its Content-Length, not to the end of the connection: a server that
    refused a body it was promised may keep the connection open a while to drain it.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        answer_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = answer_head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(payload)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


async def until_closed(port: int | None, data: bytes, timeout_s: float = 10) -> bytes:
    """Sends the bytes as given; returns everything written back until the server closes."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await reader.read(-1)
    finally:
        writer.close()


def statuses(answers: bytes) -> list[int]:
    """The status of each answer in what a connection wrote back, in order."""
    return [int(status) for status in _STATUS_LINE.findall(answers)]
