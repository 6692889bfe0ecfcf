"""The one error a config that cannot be used raises."""

from __future__ import annotations


class ConfigError(Exception):
    """gateway.yaml cannot be used; `problems` are `field: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
