"""The headers the gateway reads or sets itself, named once: the code, the OpenAPI document
and docs/calling.md's table all take them from here."""

from __future__ import annotations

import re

# What a header's value may not hold (RFC 9110 section 5.5: control characters, horizontal
# tab aside): aiohttp refuses to send it, and a receiver may split or drop it.
NOT_IN_A_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Caller -> gateway
AUTHORIZATION = "Authorization"
APP_HEADER = "X-Neu-App"
# What an app's name may be, and so X-Neu-App's value (and a caller's name).
APP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REQUEST_ID_HEADER = "X-Request-Id"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

# Gateway -> caller
CACHE_HEADER = "X-Neu-Cache"
ATTEMPTS_HEADER = "X-Neu-Attempts"
WAIT_HEADER = "X-Neu-Wait"
# On an answer whose sign the platform refused (its body relayed as it came): the gateway's
# secret for the app is wrong, not the caller's request.
SIGN_REJECTED_HEADER = "X-Neu-Sign-Rejected"
RETRY_AFTER = "Retry-After"
