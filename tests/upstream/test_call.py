"""A call is signed afresh for each attempt, and built into the request to send."""

from __future__ import annotations

from urllib.parse import parse_qsl

from multidict import CIMultiDict
from yarl import URL

from gateway.core.params import form_encoded
from gateway.upstream.call import Call, sign_for
from gateway.upstream.transport import Body
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.upstream.helpers import app_for

BASE = "http://platform.test"
PATH = "/neuopenapi/x"


def as_query(signed: dict[str, str]) -> tuple[URL, Body]:
    return URL(f"{BASE}{PATH}?{form_encoded(signed)}", encoded=True), None


def test_each_attempt_is_signed_for_its_own_time() -> None:
    fields = {"tradeNo": "T1", "sign": "forged", "timestamp": "1"}
    call = Call(
        app=app_for(BASE),
        base_url=BASE,
        method="GET",
        path=PATH,
        fields=fields,
        build=as_query,
        headers=CIMultiDict({"X-A": "1"}),
    )
    first = call.request(1_700_000_000_000, 5.0, 1024)
    second = call.request(1_700_000_001_000, 3.0, 1024)
    for request, now_ms in ((first, 1_700_000_000_000), (second, 1_700_000_001_000)):
        sent = dict(parse_qsl(request.url.raw_query_string))
        assert sent["appid"] == APPID
        assert sent["timestamp"] == str(now_ms)
        assert sent["sign"] == reference_sign(sent, SECRET)
        assert SECRET not in str(request.url)
    assert (first.method, first.timeout_s, first.max_response_bytes) == ("GET", 5.0, 1024)
    assert second.timeout_s == 3.0
    assert first.headers["X-A"] == "1"
    # The caller's fields are left as they came, for the next attempt.
    assert fields == {"tradeNo": "T1", "sign": "forged", "timestamp": "1"}


def test_a_form_body_carries_the_signed_fields() -> None:
    def as_form(signed: dict[str, str]) -> tuple[URL, Body]:
        return URL(f"{BASE}{PATH}", encoded=True), form_encoded(signed).encode()

    call = Call(
        app=app_for(BASE), base_url=BASE, method="POST", path=PATH, fields={"a": "1"}, build=as_form
    )
    request = call.request(1_700_000_000_000, 5.0, 1024)
    assert isinstance(request.body, bytes)
    sent = dict(parse_qsl(request.body.decode()))
    assert sent["sign"] == reference_sign(sent, SECRET)
    assert request.headers == CIMultiDict()


def test_signing_adds_the_apps_id_time_and_sign_and_nothing_else() -> None:
    signed = sign_for(app_for(BASE), {"a": "1"}, 1_700_000_000_000)
    assert set(signed) == {"a", "appid", "timestamp", "sign"}
    assert SECRET not in signed.values()
