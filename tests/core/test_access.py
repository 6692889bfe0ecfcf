from __future__ import annotations

import fnmatch
import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.access import (
    ANONYMOUS,
    TRUSTED,
    Caller,
    Route,
    bearer_token,
    caller_for,
    identify,
    is_trusted,
)
from gateway.core.secrets import Secret

ORDERS = Caller(
    "orders",
    Secret("orders-token-0123456789"),
    frozenset({"demo"}),
    (
        Route.parse("POST /neuopenapi/pay/transactions/*"),
        Route.parse("GET /neuopenapi/pay/transactions/tradedetail"),
    ),
)
NOTIFIER = Caller(
    "notifier",
    Secret("notifier-token-0123456789"),
    frozenset({"demo", "shop"}),
    (Route.parse("* /neuopenapi/notify/*"),),
)
CALLERS = {"orders": ORDERS, "notifier": NOTIFIER}
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/neuopenapi/pay/transactions/trade", True),
        ("POST", "/neuopenapi/pay/transactions/tradeclose", True),
        ("GET", "/neuopenapi/pay/transactions/tradedetail", True),
        ("GET", "/neuopenapi/pay/transactions/trade", False),
        ("POST", "/neuopenapi/notify/sendNotify", False),
        ("POST", "/neuopenapi/pay/transactionsX", False),
    ],
)
def test_routes(method: str, path: str, allowed: bool) -> None:
    assert ORDERS.may_call(method, path) is allowed


def test_any_method_route() -> None:
    assert NOTIFIER.may_call("GET", "/neuopenapi/notify/x")
    assert NOTIFIER.may_call("POST", "/neuopenapi/notify/a/b")


@pytest.mark.parametrize(
    ("text", "route"),
    [
        pytest.param("GET /neuopenapi/a", Route("GET", "/neuopenapi/a"), id="as written"),
        pytest.param(" post   /neuopenapi/pay/* ", Route("POST", "/neuopenapi/pay/*"), id="loose"),
        pytest.param("* /neuopenapi/*", Route("*", "/neuopenapi/*"), id="any method"),
    ],
)
def test_a_route_is_its_method_in_capitals_and_its_pattern(text: str, route: Route) -> None:
    assert Route.parse(text) == route


@pytest.mark.parametrize(
    "text", ["PUT /neuopenapi/x", "POST /other/x", "POST", "/neuopenapi/x", "GET neuopenapi/x"]
)
def test_bad_routes(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("is not 'METHOD /neuopenapi/...'")):
        Route.parse(text)


def test_apps() -> None:
    assert ORDERS.may_use("demo")
    assert not ORDERS.may_use("shop")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_identify() -> None:
    assert identify(CALLERS.values(), "orders-token-0123456789") is ORDERS
    assert identify(CALLERS.values(), "orders-token-012345678") is None
    assert identify(CALLERS.values(), "") is None


@pytest.mark.parametrize(
    ("callers", "header", "remote", "expected"),
    [
        pytest.param({}, None, "10.0.0.9", ANONYMOUS, id="no callers: anonymous"),
        pytest.param(CALLERS, None, "10.0.0.9", None, id="no token"),
        pytest.param(CALLERS, "Bearer nope", "127.0.0.1", None, id="unknown token, even trusted"),
        pytest.param(CALLERS, "Basic b3Jk", "127.0.0.1", None, id="other scheme, even trusted"),
        pytest.param(CALLERS, None, "127.0.0.1", TRUSTED, id="trusted network"),
        pytest.param(CALLERS, "Bearer notifier-token-0123456789", "10.0.0.9", NOTIFIER, id="token"),
        pytest.param(CALLERS, None, "not-an-ip", None, id="odd remote"),
        pytest.param(CALLERS, None, None, None, id="no remote"),
    ],
)
def test_caller_for(
    callers: dict[str, Caller], header: str | None, remote: str | None, expected: object
) -> None:
    assert caller_for(callers, LOOPBACK, header, remote) == expected


def test_is_trusted_v6() -> None:
    assert is_trusted("::1", (ipaddress.ip_network("::1/128"),))
    assert not is_trusted("::1", LOOPBACK)


def test_caller_repr_hides_the_token() -> None:
    assert "orders-token" not in repr(ORDERS)


_PATH_TEXT = st.text(st.sampled_from([*"/neuopayab*?[]!.-%é"]), max_size=24)


@given(pattern=_PATH_TEXT, path=_PATH_TEXT, method=st.sampled_from(["GET", "POST", "*"]))
def test_a_route_matches_a_path_as_fnmatchcase_does(pattern: str, path: str, method: str) -> None:
    route = Route(method, "/neuopenapi/" + pattern)
    expected = fnmatch.fnmatchcase("/neuopenapi/" + path, "/neuopenapi/" + pattern)
    assert route.allows("POST", "/neuopenapi/" + path) == (expected and method in ("*", "POST"))
