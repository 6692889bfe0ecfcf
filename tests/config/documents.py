"""gateway.yaml documents for the config tests: an app, and the problems a document has."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping


def app(**fields: Any) -> dict[str, Any]:
    return {"appid": "a1", "secret_env": "S", "upstream": "https://platform.example", **fields}


def problems_of(document: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        from_mapping(document, {"S": "s3cr3t"} if environ is None else environ)
    return caught.value.problems
