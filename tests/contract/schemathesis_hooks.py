"""Live values for schemathesis's requests: a login code the sandbox just handed out, and the
openId of a user who logged in, so that schema-valid requests reach the platform's success
paths (and the stateful phase follows its links from real answers), not only its refusals.

Only a positive case's value is replaced, and only a non-empty string one: a case built to
break the description keeps what breaks it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from typing import Any

import schemathesis

SANDBOX_URL = os.environ.get("NEU_SANDBOX_URL", "")
LOGIN_CODE = ("/neuopenapi/oauth/mini/accessToken", "code")
USER_FIELDS = {
    "/neuopenapi/pay/transactions/trade": "openId",
    "/neuopenapi/notify/sendNotify": "openIds",
    "/neuopenapi/activity/sendActivity": "openIds",
    "/neuopenapi/oauth/mini/user/info": "openId",
}


def sandbox_login(user: str = "13800138000") -> dict[str, Any]:
    data = urllib.parse.urlencode({"user": user}).encode()
    with urllib.request.urlopen(f"{SANDBOX_URL}/sandbox/login", data, timeout=5) as answer:  # noqa: S310 (the test's own sandbox on 127.0.0.1)
        response: dict[str, Any] = json.load(answer)["response"]
        return response


def _is_positive(case: Any) -> bool:
    meta = getattr(case, "_meta", None)
    return meta is None or not meta.generation.mode.is_negative


def _replace(values: Any, name: str, value: str) -> None:
    if isinstance(values, dict) and isinstance(values.get(name), str) and values[name]:
        values[name] = value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not SANDBOX_URL or not _is_positive(case):
        return
    path = case.operation.path
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and wait > 1:
        # A live trade stays processing: each second of wait=N is a second of the run.
        case.query["wait"] = 1
    if path == LOGIN_CODE[0]:
        _replace(case.body, LOGIN_CODE[1], sandbox_login()["code"])
    elif path in USER_FIELDS:
        open_id = sandbox_login()["openId"]
        for values in (case.body, case.query):
            _replace(values, USER_FIELDS[path], open_id)
