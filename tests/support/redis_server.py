"""A real redis-server on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.support.ports import free_port

READY = b"Ready to accept connections"
# A sentinel never says READY; it names itself once it listens.
SENTINEL_READY = b"Sentinel ID is"
START_TIMEOUT_S = 20


async def certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem in `directory`: a certificate for 127.0.0.1 that a client trusts as
    its own CA. One already there is kept, so that the servers of a set share it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    openssl = await asyncio.create_subprocess_exec(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await openssl.wait() == 0, "openssl could not make a test certificate"
    return cert, key


class RedisServer:
    """`sentinel_config` runs a sentinel instead, of that config file (which it rewrites);
    `extra_args` go on its command line after the options given here."""

    def __init__(
        self,
        password: str | None = None,
        tls_dir: Path | None = None,
        *,
        sentinel_config: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.password = password
        self.tls_dir = tls_dir
        self.sentinel_config = sentinel_config
        self.extra_args = tuple(extra_args)
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_dir is not None:
            ca = self.tls_dir / "cert.pem"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def _tls_args(self) -> list[str]:
        assert self.tls_dir is not None
        cert, key = await certificate(self.tls_dir)
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
        ]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _command(self) -> list[str]:
        """The binary, and the config file a sentinel needs (the first argument, if any)."""
        if self.sentinel_config is None:
            binary = shutil.which("redis-server")
            if binary is None:
                pytest.fail("redis-server is not installed: ./scripts/test installs it from Debian")
            return [binary]
        sentinel = shutil.which("redis-sentinel")
        if sentinel is not None:
            return [sentinel, str(self.sentinel_config)]
        # redis-sentinel is redis-server under another name: `--sentinel` asks the same of it.
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-sentinel is not installed: ./scripts/test installs it from Debian")
        return [binary, str(self.sentinel_config), "--sentinel"]

    async def start(self) -> None:
        command = self._command()
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls_dir is not None:
            args = [*args[2:], *await self._tls_args()]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            *self.extra_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        ready = READY if self.sentinel_config is None else SENTINEL_READY
        seen = b""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while ready not in seen:
                    line = await self._process.stdout.readline()
                    if not line:
                        break
                    seen += line
        except TimeoutError:
            pass
        if ready not in seen:
            raise AssertionError(f"{' '.join(command)} did not start:\n{seen.decode()}")
        self._drain = asyncio.ensure_future(self._process.stdout.read())

    async def kill(self) -> None:
        """Ends the server as a crash would: SIGKILL, nothing saved, no goodbye to its peers."""
        if self.running:
            assert self._process is not None
            self._process.kill()
            await self._process.wait()

    def pause(self) -> None:
        """Freezes the server (SIGSTOP), as a node too busy or too far away to answer."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            await self._process.wait()
        if self._drain is not None:
            await self._drain
        self._process = None


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.stop()
