"""Values that must not print themselves (app secrets, caller tokens), and reading them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path

from gateway import logs

log = logs.logger("neu_gateway.config")


class Secret:
    """A secret value that does not print itself; `reveal()` only where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, presented: str) -> bool:
        """Constant-time comparison, so timing tells nothing about the value."""
        # A header's bytes that are not UTF-8 come as surrogates; compare the bytes sent.
        return hmac.compare_digest(
            self._value.encode(), presented.encode("utf-8", "surrogateescape")
        )

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def read_credential(
    where: str,
    what: str,
    env_name: str | None,
    file_path: Path | None,
    inline: str | None,
    environ: Mapping[str, str],
    problems: list[str],
) -> Secret | None:
    """A secret or token from an environment variable, a file, or (demo only) inline."""
    if env_name is not None:
        value = environ.get(env_name)
        if value is None:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is not set")
            return None
        if not value:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is empty")
            return None
        return Secret(value)
    if file_path is not None:
        try:
            value = file_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{where}.{what}_file: cannot read {file_path} ({reason})")
            return None
        if not value:
            problems.append(f"{where}.{what}_file: {file_path} is empty")
            return None
        return Secret(value)
    assert inline is not None
    if not inline:
        problems.append(f"{where}.{what}: is empty")
        return None
    log.warning(
        "%s.%s: the secret is written in the config file; outside the sandbox demo use "
        "%s_env or %s_file",
        where,
        what,
        what,
        what,
    )
    return Secret(inline)
