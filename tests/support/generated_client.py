"""A Python client generated from a running gateway's OpenAPI description, the way a team that
calls the gateway makes one: openapi-python-client on what GET /openapi.json serves."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

from tests.support.processes import run_command

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
# Its default post-hooks run ruff on the output, which the tests import and people never read.
GENERATOR_CONFIG = "post_hooks: []\n"


@dataclass(frozen=True)
class GeneratedClient:
    """The generated package, imported: its api modules, its models and its client classes."""

    package: str

    def api(self, name: str) -> ModuleType:
        """An operation's module by tag and name, e.g. "oauth.access_token"."""
        return importlib.import_module(f"{self.package}.api.{name}")

    @property
    def models(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.models")

    def client(self, base_url: str, token: str | None) -> Any:
        """A client that fails on a status the description does not list, with the caller
        token as a bearer when given."""
        clients = importlib.import_module(f"{self.package}.client")
        if token is None:
            return clients.Client(base_url=base_url, raise_on_unexpected_status=True)
        return clients.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True
        )


async def fetch_description(gateway_url: str) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway_url + "/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        return await response.read()


def write_inputs(directory: Path, description: bytes) -> tuple[Path, Path]:
    """The description and the generator's config, as files; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "openapi.json").write_bytes(description)
    (directory / "generator.yaml").write_text(GENERATOR_CONFIG)
    return directory / "openapi.json", directory / "generator.yaml"


@contextlib.asynccontextmanager
async def generated_client(
    gateway_url: str, directory: Path, package: str = "neu_gateway_client"
) -> AsyncIterator[GeneratedClient]:
    """Generates a client from the gateway at `gateway_url` into `directory` and imports it;
    on leaving, the package is forgotten (sys.path, sys.modules) so another can take its name."""
    description, config = write_inputs(directory, await fetch_description(gateway_url))
    result = await run_command(
        str(GENERATOR),
        "generate",
        "--path",
        str(description),
        "--meta",
        "none",
        "--output-path",
        str(directory / package),
        "--config",
        str(config),
    )
    said = result.stdout + result.stderr
    assert result.status == 0, said
    # The generator goes on past a part of the description it cannot read, and says so: it
    # may say nothing but where it generates.
    others = [line for line in said.splitlines() if line.strip()]
    assert others[:1] == [f"Generating {directory / package}"], said
    assert others[1:] == [], said
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    try:
        importlib.import_module(package)
        yield GeneratedClient(package)
    finally:
        sys.path.remove(str(directory))
        for name in [name for name in sys.modules if name.split(".")[0] == package]:
            del sys.modules[name]
