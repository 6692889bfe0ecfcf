"""Typed keys for what only the process's own wiring keeps on the gateway's application."""

from __future__ import annotations

from aiohttp import web

from gateway.callbacks.delivery import Destination

# The embedded sandbox (its application and URL), once it listens: a reload tells it secrets.
EMBEDDED_SANDBOX = web.AppKey("neu_embedded_sandbox", list[tuple[web.Application, str]])
# Each app's callbacks.deliver_to and signing keys, updated in place by a reload.
DELIVER_TO = web.AppKey("neu_deliver_to", dict[str, Destination])
# Where the platform-facing callbacks listener listens, once it does.
CALLBACKS_URL = web.AppKey("neu_callbacks_url", str)
