"""The platform's OpenAPI endpoints as data, from the parameter tables of its documentation.

Pure: `validate(endpoint, params)` lists every problem with a request's parameters (without
`appid`, `timestamp` and `sign`, which are checked apart), so a caller hears all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from urllib.parse import urlsplit

from gateway.core.params import Joined, JsonNumber

LANGUAGES = ("zh_CN", "en_US", "ar_SA")
CURRENCIES = ("CNY", "USD", "SGD", "SAR")
SCOPES = ("user.info", "user.phone")
# The doc: "numbers, uppercase and lowercase letters _ - *".
OUT_TRADE_NO = re.compile(r"^[A-Za-z0-9_\-*]+$")
# tradedetail's `wait=N`, the gateway's extension: the longest a caller may be kept waiting.
MAX_WAIT_S = 60


class Kind(Enum):
    STRING = "string"
    LONG = "a whole number"
    POSITIVE_LONG = "a positive whole number"
    LIST = "a comma-separated list"
    URL = "an http(s) URL without query or fragment"


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind = Kind.STRING
    required: bool = True
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    pattern_hint: str = ""
    # A comma-separated list of these (blank items skipped), such as scope's.
    items: tuple[str, ...] = ()


Rule = Callable[[Mapping[str, str]], str | None]


@dataclass(frozen=True)
class RequiredWhen:
    """A rule across parameters: `required` is needed when `name` is `value`."""

    name: str
    value: str
    required: str
    why: str

    def __call__(self, params: Mapping[str, str]) -> str | None:
        if params.get(self.name) == self.value and not params.get(self.required):
            return f"{self.required}: required when {self.name} is {self.value} ({self.why})"
        return None


class Extra(Enum):
    """What the gateway does for an endpoint beyond signing and forwarding."""

    EXCHANGE = "each login code exchanged once, through the token cache"
    USER_BY_OPEN_ID = "the user named by openId, the cached accessToken put in"
    TRADE_WAIT = "wait=N: answered once the trade leaves processing"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    params: tuple[Param, ...]
    rules: tuple[Rule, ...] = field(default=())
    extra: Extra | None = None
    # Gateway extensions: a parameter the caller may send instead of one the doc requires,
    # which the gateway fills in before signing (openId for accessToken).
    stand_ins: tuple[tuple[str, str], ...] = ()


ACCESS_TOKEN = Endpoint(
    "POST",
    "/neuopenapi/oauth/mini/accessToken",
    (
        Param("code"),
        Param("grantType", choices=("authorization_code",)),
        Param("scope", items=SCOPES),
    ),
    extra=Extra.EXCHANGE,
)
USER_INFO = Endpoint(
    "GET",
    "/neuopenapi/oauth/mini/user/info",
    (Param("accessToken"),),
    extra=Extra.USER_BY_OPEN_ID,
    stand_ins=(("openId", "accessToken"),),
)
TRADE = Endpoint(
    "POST",
    "/neuopenapi/pay/transactions/trade",
    (
        Param("merchantId", required=False),
        Param("description", required=False),
        Param(
            "outTradeNo",
            pattern=OUT_TRADE_NO,
            pattern_hint="only letters, digits and _ - *",
        ),
        Param("timeExpire", Kind.POSITIVE_LONG, required=False),
        Param("notifyUrl", Kind.URL),
        Param("amount", Kind.POSITIVE_LONG),
        Param("currency", choices=CURRENCIES),
        Param("openId"),
    ),
)
TRADE_DETAIL = Endpoint(
    "GET",
    "/neuopenapi/pay/transactions/tradedetail",
    (Param("tradeNo"),),
    extra=Extra.TRADE_WAIT,
)
TRADE_CLOSE = Endpoint("POST", "/neuopenapi/pay/transactions/tradeclose", (Param("tradeNo"),))
SEND_NOTIFY = Endpoint(
    "POST",
    "/neuopenapi/notify/sendNotify",
    (
        Param("notifyType", Kind.LONG, choices=("1",)),
        Param("openIds", Kind.LIST),
        Param("title"),
        Param("text"),
        Param("navigateType", choices=("1", "2")),
        Param("url", required=False),
        Param("link", required=False),
        Param("language", choices=LANGUAGES),
    ),
    (RequiredWhen("navigateType", "2", "url", "navigate to a URL"),),
)
SEND_ACTIVITY = Endpoint(
    "POST",
    "/neuopenapi/activity/sendActivity",
    (
        Param("activityId"),
        Param("openIds", Kind.LIST),
        Param("color"),
        Param("templateId"),
        Param("title"),
        Param("text"),
        Param("iconUrl"),
        Param("path", required=False),
        Param("status", Kind.LONG, choices=("0", "1")),
        Param("validityTime", Kind.POSITIVE_LONG),
        Param("language", choices=LANGUAGES),
    ),
)

ENDPOINTS = {
    endpoint.path: endpoint
    for endpoint in (
        ACCESS_TOKEN,
        USER_INFO,
        TRADE,
        TRADE_DETAIL,
        TRADE_CLOSE,
        SEND_NOTIFY,
        SEND_ACTIVITY,
    )
}


def whole_numbers(endpoint: Endpoint, fields: dict[str, str]) -> dict[str, str]:
    """The fields, a JSON number with a whole value (100.0, 1e2) given to a Long parameter
    as its whole-number text ("100"): the value JSON means, in the form the platform parses.
    Any other text is left to `validate`."""
    for param in endpoint.params:
        value = fields.get(param.name)
        if param.kind in (Kind.LONG, Kind.POSITIVE_LONG) and isinstance(value, JsonNumber):
            try:
                number = Decimal(value)
            except ArithmeticError:
                # An exponent past what Decimal holds (1e9999999999999999999): no Long.
                continue
            # adjusted(): the exponent of the leading digit; past 19 digits it cannot pass.
            if number.is_finite() and number.adjusted() < 20 and number == number.to_integral():
                fields[param.name] = str(int(number))
    return fields


def validate(
    endpoint: Endpoint, params: Mapping[str, str], values: bool = True, one_value: bool = False
) -> list[str]:
    """Every problem with these params for this endpoint, as `name: reason` lines.

    With `values` off, only required parameters are checked: the doc's lists of languages,
    scopes and currencies are a snapshot, and the platform may accept more before this
    gateway knows it. With `one_value` on (and `values`), a parameter the doc gives one value
    is refused a list (a repeated key, a JSON list).
    """
    problems = []
    for param in endpoint.params:
        value = params.get(param.name, "")
        if values and one_value and isinstance(value, Joined) and param.kind is not Kind.LIST:
            # Even an empty list: the caller meant something other than no value.
            problem: str | None = "must be one value, not a list (a repeated key or a JSON list)"
        elif value == "":
            if param.required:
                problems.append(f"{param.name}: required")
            continue
        else:
            problem = _check(param, value) if values else None
        if problem:
            problems.append(f"{param.name}: {problem}")
    if values:
        problems += [problem for rule in endpoint.rules if (problem := rule(params))]
    return problems


def _check(param: Param, value: str) -> str | None:
    # Messages never repeat the value: it may be a credential, and the caller has it anyway.
    if param.kind in (Kind.LONG, Kind.POSITIVE_LONG):
        if not re.fullmatch(r"-?[0-9]{1,19}", value):
            return f"must be {param.kind.value}"
        if param.kind is Kind.POSITIVE_LONG and int(value) <= 0:
            return f"must be {param.kind.value}"
    if param.kind is Kind.URL and not _is_plain_url(value):
        return f"must be {param.kind.value}"
    if param.kind is Kind.LIST and not all(item.strip() for item in value.split(",")):
        return "must be a comma-separated list without empty items"
    if param.choices and value not in param.choices:
        return f"must be one of {', '.join(param.choices)}"
    if param.pattern and not param.pattern.fullmatch(value):
        return param.pattern_hint or f"must match {param.pattern.pattern}"
    if param.items:
        listed = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in listed if item not in param.items]
        if unknown:
            return f"unknown {', '.join(unknown)}; use {' or '.join(param.items)}, comma-separated"
    return None


def _is_plain_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )
