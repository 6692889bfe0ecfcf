"""Hostile input against the gateway's contract: its served description and the checks that
came with it (JSON whole numbers, one-value parameters, multipart names, the 405's Allow)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gateway.contract.fields import Bounds, endpoint_fields
from gateway.core.endpoints import ENDPOINTS, validate
from gateway.core.params import parse_json
from tests.abuse.conftest import Target, assert_refused, exchange, request_bytes
from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.paths import TRADE
from tests.support.platform_double import APPID, SECRET

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTIFY = "/neuopenapi/notify/sendNotify"
JSON = {"Content-Type": "application/json"}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}


def notify(**values: object) -> bytes:
    body = {
        "notifyType": 1,
        "openIds": ["o1"],
        "title": "t",
        "text": "x",
        "navigateType": 1,
        "language": "en_US",
    }
    return json.dumps(body | values).encode()


@pytest.mark.parametrize(
    "number",
    [
        # Past the exponents Decimal holds: it raises instead of making a number.
        "1e9999999999999999999",
        "-1e-99999999999999999999",
        "1E+1000000000000000000",
        # What Decimal holds, but no Long.
        "1e999999999",
        "1e-999999999",
        "1e19",
        "0." + "0" * 500 + "1",
    ],
)
async def test_a_json_number_no_long_can_be_is_refused_not_a_500(
    target: Target, number: str
) -> None:
    body = notify().replace(b'"notifyType": 1', b'"notifyType": ' + number.encode())
    trade = (
        b'{"outTradeNo": "o1", "amount": %s, "currency": "USD", "openId": "o", ' % (number.encode())
        + b'"notifyUrl": "http://127.0.0.1:9/n"}'
    )
    async with target.under_abuse(max_growth_mb=8):
        for path, sent in ((NOTIFY, body), (TRADE, trade)):
            answer = await exchange(target.port, request_bytes("POST", path, sent, JSON))
            assert_refused(answer, 400, "validation_failed")


def multipart(disposition: bytes) -> bytes:
    parts = [b'name="ok"', disposition]
    return (
        b"".join(b"--b\r\nContent-Disposition: form-data; " + p + b"\r\n\r\nv\r\n" for p in parts)
        + b"--b--\r\n"
    )


@pytest.mark.parametrize(
    "disposition",
    [
        pytest.param(b"name*=utf-8''%2Ftitle", id="an encoded leading slash in name*"),
        pytest.param(b"name*=UTF-8''%5Ctitle", id="an encoded backslash in name*"),
        pytest.param(b"name*=utf-8''a%5C%22b", id="an encoded escaped quote in name*"),
        pytest.param(b"name=x; name*=utf-8''%2Ftitle", id="name* beside name"),
        pytest.param(b"name*0*=utf-8''%2F; name*1=title", id="a continued name*"),
        pytest.param(
            b"name=fileData; filename*=utf-8''%2Fetc%2Fpasswd", id="an encoded slash in filename*"
        ),
        pytest.param(
            b"name=fileData; filename*=utf-8''..%5C..%5Cx", id="encoded backslashes in filename*"
        ),
    ],
)
async def test_an_extended_name_the_receiver_would_read_as_another_is_refused(
    target: Target, disposition: bytes
) -> None:
    # Decoded, these pass the quoted form's check; written again quoted (as the gateway
    # forwards them), the receiver's parser drops the slash or unescapes the backslash.
    async with target.under_abuse(max_growth_mb=8):
        answer = await exchange(
            target.port, request_bytes("POST", ECHO, multipart(disposition), MULTIPART)
        )
        assert_refused(answer, 400, "invalid_multipart")


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        pytest.param('name="\u2215title"'.encode(), "\u2215title", id="U+2215"),
        pytest.param('name="\uff0ftitle"'.encode(), "\uff0ftitle", id="U+FF0F"),
        pytest.param(b'name="a%5Cb"', "a%5Cb", id="a literal %5C"),
        pytest.param(b"name*=utf-8''a%2Fb", "a/b", id="an inner slash in name*"),
        pytest.param(b'name="it\'s"', "it's", id="a single quote"),
    ],
)
async def test_a_name_that_only_looks_like_a_slash_reaches_the_platform_as_sent(
    target: Target, disposition: bytes, name: str
) -> None:
    answer = await exchange(
        target.port, request_bytes("POST", ECHO, multipart(disposition), MULTIPART)
    )
    assert answer is not None
    assert answer.status == 200, answer
    assert answer.body["response"]["params"][name] == "v"


async def test_the_served_description_tells_no_secret_and_no_upstream(target: Target) -> None:
    answer = await exchange(target.port, request_bytes("GET", "/openapi.json"))
    assert answer is not None
    assert answer.status == 200, answer
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"
    text = json.dumps(answer.body)
    assert answer.body["servers"] == [{"url": "/", "description": "this gateway"}]
    for secret in (SECRET, APPID, target.sandbox_url, str(target.sandbox_port)):
        assert secret not in text


@pytest.mark.parametrize(
    ("target_path", "status"),
    [
        ("/docs/%2e%2e/openapi.json", 404),
        ("/docs/..%2f..%2fpyproject.toml", 404),
        ("/docs/swagger-ui.css%00", 404),
        ("/docs/index.html", 404),
        ("/docs/oauth2-redirect.html", 404),
        ("/docs//swagger-ui.css", 404),
        ("/openapi.json/", 404),
        ("/docs/" + "a" * 300, 404),
    ],
)
async def test_the_docs_serve_their_allowed_files_only(
    target: Target, target_path: str, status: int
) -> None:
    answer = await exchange(target.port, request_bytes("GET", target_path))
    assert answer is not None
    assert answer.status == status, answer


@pytest.mark.parametrize("items", [[None], [""]], ids=repr)
async def test_with_validation_off_a_list_of_empty_values_is_not_described_for_a_required_one(
    items: list[str | None],
) -> None:
    # The gateway joins the list to "", which is no value: 400 `amount: required`.
    bounds = Bounds(values_checked=False)
    endpoint = ENDPOINTS[TRADE]
    parsed = dict(parse_json(json.dumps({"amount": items}).encode()))
    assert "amount: required" in validate(endpoint, parsed, values=False)
    schema = endpoint_fields(endpoint, bounds).json["amount"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(items, schema)
    # Two items join with a comma: a value, empty or not.
    for taken in ([None, "1"], [None, ""]):
        joined = dict(parse_json(json.dumps({"amount": taken}).encode()))
        assert "amount: required" not in validate(endpoint, joined, values=False)
        jsonschema.validate(taken, schema)
