"""Which web pages may change the sandbox: its own page only.

The sandbox listens on loopback, yet any page open in a browser on the same machine can send
it requests: a form POST to another origin needs no permission, and the browser cannot read
the answer but the change is made all the same (a user created, an app's secret replaced, a
trade made whose callback goes where the page said). A browser marks the requests a page
makes: `Origin` on every POST, `Sec-Fetch-Site` on every request in current browsers. Curl,
scripts, tests and the gateway send neither, and are let through as before.

So a request that may change something (any method but GET, HEAD and OPTIONS) and carries
either header passes only if it came from the sandbox's own origin, which is the origin its
`Host` names (what the browser was asked to reach), on a loopback name: the sandbox listens
on nothing else, so a page that reached it under another name did so by DNS rebinding, and
its `Origin` would otherwise look like the sandbox's own.

`localhost` and `127.0.0.1` are different origins to a browser, and so they are here too:
the page asks with relative paths, so it calls the name it was opened at, whichever it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from gateway.core.hosts import is_loopback
from gateway.core.verification import Rejected

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request the page itself made, or that the user made by hand.
OWN_SITES = frozenset({"same-origin", "none"})
# A Host header as a browser sends it: a name or an address, and a port.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")

FOREIGN_PAGE = (
    "refused: a web page on another origin may not change the sandbox; its controls take "
    "requests from its own page, or from clients that are no web page (curl, scripts)"
)
NOT_ON_LOOPBACK = (
    "refused: a web page may change the sandbox only when it was opened at a loopback "
    "address (localhost, 127.0.0.1, [::1]), the only ones the sandbox listens on"
)


def refusal(method: str, headers: Mapping[str, str], scheme: str) -> str | None:
    """Why the request may not change the sandbox, or None if it may. `headers` as a request
    has them, their names in any case."""
    if method in SAFE_METHODS:
        return None
    site = headers.get("Sec-Fetch-Site")
    origin = headers.get("Origin")
    if site is None and origin is None:
        return None  # no browser made it
    if site is not None and site.strip().lower() not in OWN_SITES:
        return FOREIGN_PAGE
    own = _own_origin(scheme, headers.get("Host", ""))
    if own is None:
        return NOT_ON_LOOPBACK
    if origin is not None and _origin_of(origin) != own:
        return FOREIGN_PAGE
    return None


def _own_origin(scheme: str, host: str) -> tuple[str, str, int | None] | None:
    """The sandbox's origin as the browser addressed it, if that was a loopback name."""
    if not _HOST.fullmatch(host):
        return None
    own = _origin_of(f"{scheme}://{host}")
    if own is None or not is_loopback(own[1]):
        return None
    return own


def _origin_of(text: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin, the port filled in when it is the scheme's own;
    None for `null` or anything that is not one."""
    try:
        url = URL(text.strip())
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.user is not None:
        return None
    return (url.scheme, url.host.lower(), url.port)


@web.middleware
async def own_page_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses, 403 in the envelope, a change a web page on another origin asks for."""
    reason = refusal(request.method, request.headers, request.scheme)
    if reason is not None:
        raise Rejected(403, reason)
    return await handler(request)
