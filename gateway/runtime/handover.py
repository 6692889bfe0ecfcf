"""The config in force, from a supervisor to each of its workers, through an inherited pipe.

A worker never reads gateway.yaml: it starts with the config its supervisor has in force (the
one it loaded at the start, or took at its last reload), every secret and token already read,
and then takes each reload from the same pipe: a new config, or word that the supervisor
refused one; and each secret or token file the supervisor saw change. So a worker started
again signs exactly as its siblings do, whatever the files on disk say by then, and a reload
reaches every worker as one reading of the files.

The pipe is the cleanest way to hand a secret to a child: it has no name or path another
process could open, nothing of it is left on disk or in argv or the environment, and it goes
away with the two processes. Its end closing also says the supervisor is gone, once, when the
last of its threads ends; a parent-death signal comes again for each thread that outlives the
one that started the worker.

Messages are pickled: both ends are this program and the pipe is theirs alone, and pickle
carries a Config exactly as it is, fields added later included.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.config.model import Config
from gateway.runtime.secret_files import Change

_LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class Refused:
    """A reload the supervisor refused, in `field: reason` lines: the config in force stays."""

    problems: tuple[str, ...]


@dataclass(frozen=True)
class Rotated:
    """Secret or token files the supervisor saw change (runtime/secret_files.py): each worker
    puts the new values in force, as a single gateway does."""

    changes: tuple[Change, ...]


Message = Config | Refused | Rotated


def encode(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def _decode(payload: bytes) -> Message:
    # Only the supervisor holds the other end: what comes is what this program wrote.
    message = pickle.loads(payload)  # noqa: S301
    if not isinstance(message, Config | Refused | Rotated):
        raise TypeError(f"not a handover message: {type(message).__name__}")
    return message


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive_start(fd: int) -> Config | None:
    """The config to start with, the first message (blocking); None if the supervisor ended
    before it said it all."""
    header = _read_exactly(fd, _LENGTH.size)
    payload = None if header is None else _read_exactly(fd, _LENGTH.unpack(header)[0])
    if payload is None:
        return None
    message = _decode(payload)
    if not isinstance(message, Config):
        raise TypeError("a worker's first message must be its config")
    return message


async def follow(fd: int, take: Callable[[Message], Awaitable[None]]) -> None:
    """Takes each message after the first, in order; returns once the supervisor is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        while True:
            try:
                header = await reader.readexactly(_LENGTH.size)
                payload = await reader.readexactly(_LENGTH.unpack(header)[0])
            except asyncio.IncompleteReadError:
                return
            await take(_decode(payload))
    finally:
        transport.close()


class Sender:
    """The supervisor's end of one worker's pipe. Writes never block the supervisor: what a
    worker has not read yet (it is still starting) waits in the pipe and in the transport."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    @classmethod
    async def open(cls, fd: int) -> Sender:
        """The sender on the pipe's write end `fd`, which it owns from here on."""
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "wb", buffering=0)
        try:
            transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        except BaseException:
            pipe.close()
            raise
        return cls(transport)

    def send(self, message: Message) -> None:
        if not self._transport.is_closing():
            self._transport.write(encode(message))

    def close(self) -> None:
        self._transport.close()
