"""The values `neu-gateway init` writes for the operator to replace with their own. The
starter config is written from them (cli/starter.py) and check-config refuses a config that
still holds one, so the two cannot drift apart."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.config.model import Config

APPID = "your-appid"
# Under `.example`, a name reserved for examples (RFC 2606): no platform can live there.
UPSTREAM = "https://your-platform-domain.example"
_UPSTREAM_HOST = urlsplit(UPSTREAM).hostname


def placeholders_left(config: Config) -> list[str]:
    """A `field: reason` problem for each placeholder still in the config."""
    problems = []
    for app in config.apps.values():
        if app.appid == APPID:
            problems.append(f'apps.{app.name}.appid: still init\'s placeholder "{APPID}"')
        if not app.uses_sandbox and urlsplit(app.upstream).hostname == _UPSTREAM_HOST:
            problems.append(f'apps.{app.name}.upstream: still init\'s placeholder "{UPSTREAM}"')
    return problems
