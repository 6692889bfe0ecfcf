"""The gateway's own contract, served: GET /openapi.json, and a documentation page at GET /docs
rendered from it by Swagger UI.

Swagger UI's files come from an installed package (swagger-ui-py), never from the internet:
this module is the one place that knows where that package keeps them (`ASSETS_DIR`), and
tests/http/test_api_docs.py checks they are still there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from gateway.config.model import Config
from gateway.contract.fields import Bounds
from gateway.contract.openapi import DOCUMENT_PATH, Facts, build_document

DOCS_PATH = "/docs"
# swagger-ui-py's layout: its static/ folder holds Swagger UI's dist files.
ASSETS_DIR = Path(str(resources.files("swagger_ui") / "static"))
# The files the page loads, and nothing else of the package is served.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
# Scripts and styles from this gateway only; Swagger UI sets inline styles, and draws its
# icons as data: URLs.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>neu-gateway API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""
# Outside the page, so the Content-Security-Policy needs no 'unsafe-inline' for scripts.
_INIT = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{DOCUMENT_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  }});
}};
"""


def facts_of(config: Config, server_url: str) -> Facts:
    """What the served document says of this gateway, from its config."""
    return Facts(
        server_url=server_url,
        apps=tuple(config.apps),
        token_required=bool(config.callers) and not config.trusted_networks,
        bounds=Bounds(
            max_value_length=config.limits.max_value_length,
            max_key_length=config.limits.max_key_length,
            max_params=config.limits.max_params,
            values_checked=all(app.validation == "doc" for app in config.apps.values()),
        ),
    )


def main_listener_url(config: Config) -> str:
    """Where callers reach this gateway, as far as its config knows: for a document served
    elsewhere (the admin listener)."""
    host = config.listen.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.listen.port}"


@functools.lru_cache(maxsize=8)
def _document_bytes(facts: Facts) -> bytes:
    # Built once per config: a reload that changes what it says makes a new one.
    return json.dumps(build_document(facts), indent=2).encode()


def contract_routes(config_now: Callable[[], Config], for_callers: bool) -> list[web.RouteDef]:
    """The routes, beside /healthz. `for_callers`: served on the listener callers call (the
    document then names its server relatively), not on the operator's own (admin.listen)."""

    async def openapi(request: web.Request) -> web.Response:
        config = config_now()
        server_url = "/" if for_callers else main_listener_url(config)
        return web.Response(
            body=_document_bytes(facts_of(config, server_url)),
            content_type="application/json",
            # nosniff: a browser must not run the document as anything else.
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html", headers=_SECURITY_HEADERS)

    async def init(request: web.Request) -> web.Response:
        return web.Response(text=_INIT, content_type="text/javascript", headers=_SECURITY_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.FileResponse(
            ASSETS_DIR / name,
            headers={
                "Content-Type": ASSETS[name],
                "Cache-Control": "max-age=86400",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [
        web.get(DOCUMENT_PATH, openapi, allow_head=True),
        web.get(DOCS_PATH, page, allow_head=True),
        web.get(f"{DOCS_PATH}/init.js", init, allow_head=True),
        web.get(DOCS_PATH + "/{name}", asset, allow_head=True),
    ]
