"""The OpenAPI description: a valid 3.1 document, generated from the endpoint tables, and
saying what the gateway checks, no more and no less."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from gateway.contract.answers import CALLBACK_ONLY
from gateway.contract.fields import Bounds, endpoint_fields
from gateway.contract.openapi import Facts, build_document
from gateway.core import errors, headers
from gateway.core.endpoints import ENDPOINTS, Kind, whole_numbers
from gateway.core.endpoints import validate as validate_params
from gateway.core.params import parse_json
from gateway.core.signing import FILE_FIELD

DOCUMENT = build_document()
SIGNED_BY_THE_GATEWAY = {"appid", "timestamp", "sign"}


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        path: operation for path, item in document["paths"].items() for operation in item.values()
    }


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"


@pytest.mark.parametrize(
    "facts",
    [
        Facts(),
        Facts(apps=("shop", "games"), token_required=False, bounds=Bounds(max_value_length=100)),
        Facts(bounds=Bounds(values_checked=False, max_key_length=10, max_params=5)),
    ],
    ids=["defaults", "two apps, no token needed", "validation off"],
)
def test_every_served_variant_is_valid_and_json(facts: Facts) -> None:
    document = build_document(facts)
    validate(document)
    assert json.loads(json.dumps(document)) == document


def test_every_documented_endpoint_is_described_with_its_method_and_nothing_else() -> None:
    described = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    }
    assert described == {(endpoint.method, path) for path, endpoint in ENDPOINTS.items()}


def parameter_names(operation: dict[str, Any]) -> dict[str, set[str]]:
    """Each place a parameter goes (query, header, and each body type) -> its names."""
    found: dict[str, set[str]] = {}
    for parameter in operation["parameters"]:
        parameter = resolve(DOCUMENT, parameter)
        found.setdefault(parameter["in"], set()).add(parameter["name"])
    for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
        found[media_type] = set(content["schema"]["properties"])
    return found


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_an_endpoint_takes_the_doc_table_but_what_the_gateway_signs(path: str) -> None:
    endpoint = ENDPOINTS[path]
    operation = operations(DOCUMENT)[path]
    names = parameter_names(operation)
    documented = {param.name for param in endpoint.params}
    extras = {stand_in for stand_in, _ in endpoint.stand_ins}
    if endpoint.extra is not None and endpoint.extra.name == "TRADE_WAIT":
        extras.add("wait")
    places = ["query"] if endpoint.method == "GET" else list(operation["requestBody"]["content"])
    for place in places:
        files = {FILE_FIELD} if place == "multipart/form-data" else set()
        assert names[place] == documented | extras | files, place
        assert not names[place] & SIGNED_BY_THE_GATEWAY
    assert names["header"] == {headers.APP_HEADER, headers.REQUEST_ID_HEADER, "traceparent"}


def test_a_post_takes_a_form_json_and_multipart_with_the_file_as_binary() -> None:
    body = operations(DOCUMENT)["/neuopenapi/pay/transactions/trade"]["requestBody"]
    assert set(body["content"]) == {
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data",
    }
    file = body["content"]["multipart/form-data"]["schema"]["properties"][FILE_FIELD]
    assert file["contentMediaType"] == "application/octet-stream"
    assert body["required"] is True


def text_schema(path: str, name: str, facts: Facts | None = None) -> dict[str, Any]:
    document = build_document(facts or Facts())
    operation = operations(document)[path]
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
        return dict(schema["schema"]["properties"][name])
    [parameter] = [p for p in operation["parameters"] if p.get("name") == name]
    return dict(parameter["schema"])


def test_the_doc_tables_lists_of_values_are_enums() -> None:
    assert text_schema("/neuopenapi/pay/transactions/trade", "currency")["enum"] == [
        "CNY",
        "USD",
        "SGD",
        "SAR",
    ]
    assert text_schema("/neuopenapi/notify/sendNotify", "language")["enum"] == [
        "zh_CN",
        "en_US",
        "ar_SA",
    ]
    assert text_schema("/neuopenapi/notify/sendNotify", "notifyType")["enum"] == [1]
    assert "user\\.phone" in text_schema("/neuopenapi/oauth/mini/accessToken", "scope")["pattern"]


def test_required_flags_follow_the_tables_and_the_gateways_stand_ins() -> None:
    trade = operations(DOCUMENT)["/neuopenapi/pay/transactions/trade"]
    form = trade["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["required"]) == {"outTradeNo", "notifyUrl", "amount", "currency", "openId"}
    user_info = operations(DOCUMENT)["/neuopenapi/oauth/mini/user/info"]
    required = {p["name"] for p in user_info["parameters"] if p.get("required")}
    # accessToken, or openId instead: neither alone is required.
    assert required == set()


def test_with_validation_off_only_presence_is_described() -> None:
    schema = text_schema(
        "/neuopenapi/pay/transactions/trade", "currency", Facts(bounds=Bounds(values_checked=False))
    )
    assert "enum" not in schema
    assert schema["minLength"] == 1


def test_a_served_document_names_its_apps_and_says_when_no_token_is_needed() -> None:
    document = build_document(Facts(apps=("shop",), token_required=False))
    assert document["components"]["parameters"]["App"]["schema"]["enum"] == ["shop"]
    assert {} in document["security"]
    assert build_document(Facts())["security"] == [{"callerToken": []}]


def caller_errors() -> list[type[errors.GatewayError]]:
    return [error for error in errors.every_error() if not issubclass(error, CALLBACK_ONLY)]


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_every_error_a_caller_can_get_is_described_with_its_status(path: str) -> None:
    responses = operations(DOCUMENT)[path]["responses"]
    for error in caller_errors():
        response = resolve(DOCUMENT, responses[str(error.status)])
        schema = resolve(DOCUMENT, response["content"]["application/json"]["schema"])
        assert error.code in schema["properties"]["error"]["enum"], error
        assert f"`{error.code}`" in response["description"]
        assert response["headers"][headers.REQUEST_ID_HEADER]


def test_the_callback_listeners_errors_are_not_a_callers() -> None:
    described = {
        code
        for name, schema in DOCUMENT["components"]["schemas"].items()
        if name.startswith("Error")
        for code in schema["properties"]["error"]["enum"]
    }
    assert described.isdisjoint({error.code for error in CALLBACK_ONLY})


def test_an_answer_of_the_gateway_matches_the_description_of_its_status() -> None:
    error = errors.UnknownApp()
    body = json.loads(errors.render(error))
    schema = {"$ref": f"#/components/schemas/Error{error.status}", **DOCUMENT}
    jsonschema.validate(body, schema)


def test_the_gateways_headers_are_described() -> None:
    described = json.dumps(DOCUMENT)
    for name in (
        headers.APP_HEADER,
        headers.REQUEST_ID_HEADER,
        headers.CACHE_HEADER,
        headers.ATTEMPTS_HEADER,
        headers.WAIT_HEADER,
        headers.SIGN_REJECTED_HEADER,
        headers.RETRY_AFTER,
    ):
        assert f'"{name}"' in described, name
    assert DOCUMENT["components"]["securitySchemes"]["callerToken"]["scheme"] == "bearer"


def test_the_stories_links_name_operations_and_fields_that_exist() -> None:
    ids = {operation["operationId"]: operation for operation in operations(DOCUMENT).values()}
    links = [
        link
        for operation in operations(DOCUMENT).values()
        for link in operation["responses"]["200"].get("links", {}).values()
    ]
    assert {link["operationId"] for link in links} == {"userInfo", "tradeDetail", "tradeClose"}
    for link in links:
        target = ids[link["operationId"]]
        given_names = set(link.get("parameters", {})) | set(link.get("requestBody", {}))
        assert given_names <= set().union(*parameter_names(target).values())
        for expression in [
            *link.get("parameters", {}).values(),
            *link.get("requestBody", {}).values(),
        ]:
            assert re.fullmatch(r"\$response\.body#/response/\w+", expression)


# -- the description and the gateway's checks agree -----------------------------------------

TEXT = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,21}", fullmatch=True),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "1",
            "2",
            "USD",
            "user.info",
            "user.info, user.phone",
            ",",
            "https://a.b/c",
            "http://a",
            "https://a.b/c?d",
            "a,b",
            "a,,b",
            " ,user.phone",
            "zh_CN",
            "9" * 19,
        ]
    ),
)


@pytest.mark.parametrize("path", list(ENDPOINTS))
@given(data=st.data())
def test_a_value_the_description_allows_is_one_the_gateway_takes(
    path: str, data: st.DataObject
) -> None:
    endpoint = ENDPOINTS[path]
    fields = endpoint_fields(endpoint, Bounds())
    for param in endpoint.params:
        value = data.draw(TEXT, label=param.name)
        if re.fullmatch(r"-?0[0-9]+|-0", value):
            continue  # a number's text with leading zeros: no client writes an integer so
        problems = validate_params(endpoint, {param.name: value})
        refused = any(problem.startswith(f"{param.name}:") for problem in problems)
        assert _allows_text(fields.text[param.name], value) != refused, (param.name, value)


def _allows_text(schema: dict[str, Any], text: str) -> bool:
    """Whether the schema takes this text as a form field; an integer schema reads its text
    as a number, as a server decoding the form does."""
    as_number = [int(text)] if re.fullmatch(r"-?[0-9]+", text) else []
    return any(_valid(schema, candidate) for candidate in [text, *as_number])


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return _validator(json.dumps(schema, sort_keys=True)).is_valid(value)


@functools.cache
def _validator(schema: str) -> jsonschema.protocols.Validator:
    """What jsonschema.validate checks with, the schema checked against its metaschema as it
    does, but once per schema rather than on every call (most of these tests' time)."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded)
    cls.check_schema(loaded)
    validator: jsonschema.protocols.Validator = cls(loaded)
    return validator


JSON_VALUES = st.one_of(
    st.integers(min_value=-(10**21), max_value=10**21),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    TEXT,
    st.lists(st.one_of(st.integers(), st.booleans(), TEXT, st.none()), max_size=3),
)


@pytest.mark.parametrize("path", [path for path, e in ENDPOINTS.items() if e.method == "POST"])
@given(data=st.data())
def test_a_json_value_the_description_allows_is_one_the_gateway_takes(
    path: str, data: st.DataObject
) -> None:
    endpoint = ENDPOINTS[path]
    fields = endpoint_fields(endpoint, Bounds())
    for param in endpoint.params:
        value = data.draw(JSON_VALUES, label=param.name)
        whole_float = isinstance(value, float) and value.is_integer()
        if whole_float and param.kind not in (Kind.LONG, Kind.POSITIVE_LONG):
            # JSON Schema cannot tell 2.0 from 2; the gateway signs a text parameter's literal.
            continue
        allowed = _valid(fields.json[param.name], value)
        body = json.dumps({param.name: value}).encode()
        parsed = whole_numbers(endpoint, dict(parse_json(body)))
        if param.required and parsed.get(param.name, "") == "":
            refused = True
        else:
            problems = validate_params(endpoint, parsed, one_value=True)
            refused = any(problem.startswith(f"{param.name}:") for problem in problems)
        assert allowed != refused, (param.name, value)
