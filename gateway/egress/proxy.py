"""The egress handler: pick the app, read the caller's params, sign, forward, relay the answer."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import MultipartWriter, hdrs, web
from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.config.schema import LimitsConfig
from gateway.core.endpoints import MAX_WAIT_S, Endpoint, Extra, validate, whole_numbers
from gateway.core.errors import (
    BadRequest,
    GatewayError,
    JsonWithoutContentType,
    TokenRequired,
    UnsupportedMediaType,
    ValidationFailed,
    quoted_name,
)
from gateway.core.headers import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    WAIT_HEADER,
)
from gateway.core.params import (
    caller_fields,
    check_limits,
    form_encoded,
    is_unicode,
    looks_like_json,
    parse_json,
    parse_urlencoded,
)
from gateway.egress.admission import ADMITTED, admit
from gateway.egress.extras import exchange_code, relay, user_info
from gateway.egress.keys import BASE_URLS, TOKENS, UPSTREAM, WAITS
from gateway.egress.uploads import MultipartLimits, Upload, read_multipart
from gateway.http.bodies import BodyTimes, read_capped, refuse_declared_size, send_continue
from gateway.http.keys import REQUEST_ID, config_of
from gateway.http.middlewares import (
    check_header_size,
    error_response,
    log_access,
    request_id_for,
    trace_for,
)
from gateway.upstream.call import Call
from gateway.upstream.details import base_url_for, trade_detail
from gateway.upstream.transport import Answer

FORM_TYPE = "application/x-www-form-urlencoded"
_WAIT_SECONDS = re.compile(r"[0-9]{1,3}")
# Caller headers worth passing on; everything else (Authorization, Cookie, X-Neu-*, Host,
# hop-by-hop) stays here. `traceparent` goes as the request's trace has it (trace_for).
FORWARDED_HEADERS = (
    "Accept",
    "Accept-Language",
    "User-Agent",
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
)


def check_params(endpoint: Endpoint, fields: dict[str, str], app: App) -> None:
    """The doc's rules for this endpoint, checked before anything is sent upstream: all of
    them, or with the app's `validation: off` the required parameters only."""
    checked = fields
    for stand_in, required in endpoint.stand_ins:
        if not fields.get(required) and fields.get(stand_in):
            # The gateway's own extension: it fills the required one in before signing.
            checked = {**checked, required: f"from {stand_in}"}
        elif not fields.get(required):
            # No user named at all: the user's credential is missing, as with an openId
            # whose token is not cached.
            raise TokenRequired(
                f"send {required}, or {stand_in} for a user whose login code was exchanged "
                "through this gateway"
            )
    by_doc = app.validation == "doc"
    problems = validate(endpoint, checked, values=by_doc, one_value=True)
    if problems:
        hint = (
            " (checked against the platform doc; if the platform now accepts a value the doc "
            f"does not list, set apps.{app.name}.validation: off)"
            if by_doc
            else ""
        )
        raise ValidationFailed(
            f"invalid parameters for {endpoint.method} {endpoint.path}: "
            + "; ".join(problems)
            + hint
        )


async def expect_body(request: web.Request) -> web.Response | None:
    """Refuses a request before the caller sends its body (Expect: 100-continue)."""
    limit = config_of(request).limits.max_body_bytes
    try:
        check_header_size(request)
        request[ADMITTED] = await admit(request)
        refuse_declared_size(request, limit, "limits.max_body_bytes")
        await send_continue(request)
    except GatewayError as exc:
        # Middlewares do not run for an answer given here, so it is logged here.
        request_id = request_id_for(request)
        response = error_response(exc, request_id)
        log_access(request, request_id, exc.status, 0.0, response)
        return response
    return None


async def forward(request: web.Request) -> web.Response:
    # Admitted already when the caller asked Expect: 100-continue; not a second time.
    admitted = request.get(ADMITTED) or await admit(request)
    app, path = admitted.app, admitted.path
    limits = config_of(request).limits
    query = parse_urlencoded(
        request.rel_url.raw_query_string.encode(), "query string", limits.max_params
    )
    upload = await read_body(request, limits, limits.max_params - len(query))
    try:
        pairs = query + upload.pairs
        check_limits(pairs, len(upload.files), limits)
        fields = caller_fields(pairs)
        if upload.files and request.method == "GET":
            raise BadRequest("file uploads need POST")
        if admitted.endpoint is not None:
            fields = whole_numbers(admitted.endpoint, fields)
            check_params(admitted.endpoint, fields, app)

        async def send(final: dict[str, str]) -> Answer:
            return await _send(request, app, path, final, upload)

        extra = admitted.endpoint.extra if admitted.endpoint is not None else None
        if extra is Extra.TRADE_WAIT and "wait" in fields:
            return await wait_for_trade(request, app, fields)
        cache = request.app[TOKENS]
        if extra is Extra.EXCHANGE and fields.get("code"):
            return await exchange_code(cache, app.name, fields, send)
        if extra is Extra.USER_BY_OPEN_ID:
            return await user_info(cache, app.name, fields, send)
        return relay(await send(fields))
    finally:
        upload.close()


async def wait_for_trade(request: web.Request, app: App, fields: dict[str, str]) -> web.Response:
    """tradedetail with `wait=N`: answered once the trade leaves processing, or after N s."""
    wait = fields.pop("wait")
    # isdigit() would take '²' and other digits int() refuses; only ASCII ones will do.
    if not _WAIT_SECONDS.fullmatch(wait) or not 1 <= int(wait) <= MAX_WAIT_S:
        raise ValidationFailed(f"wait: must be a whole number of seconds from 1 to {MAX_WAIT_S}")
    trade_no = fields["tradeNo"]
    base_url = base_url_for(request.app[BASE_URLS], app)
    upstream = request.app[UPSTREAM]

    async def fetch() -> Answer:
        return await trade_detail(upstream, base_url, app, trade_no)

    answer, settled = await request.app[WAITS].wait(app.name, trade_no, int(wait), fetch)
    response = relay(answer)
    response.headers[WAIT_HEADER] = "done" if settled else "timeout"
    return response


async def _send(
    request: web.Request, app: App, path: str, fields: dict[str, str], upload: Upload
) -> Answer:
    """Send the fields to the app's upstream as the platform expects them, signed afresh
    for each attempt."""
    base_url = base_url_for(request.app[BASE_URLS], app)
    url = base_url + path
    headers = forwarded_headers(request.headers)
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    trace = trace_for(request)
    headers[TRACEPARENT_HEADER] = trace.traceparent
    if not trace.given:
        # It belongs to the caller's traceparent, which was malformed or absent.
        headers.popall(TRACESTATE_HEADER, None)
    method = request.method
    if method == "POST" and not upload.files:
        headers[hdrs.CONTENT_TYPE] = FORM_TYPE

    def build(signed: dict[str, str]) -> tuple[URL, bytes | MultipartWriter | None]:
        # encoded=True: form_encoded() already produced the exact bytes the sign was made for.
        if method == "GET":
            return URL(url + "?" + form_encoded(signed), encoded=True), None
        if upload.files:
            return URL(url, encoded=True), multipart_body(signed, upload)
        return URL(url, encoded=True), form_encoded(signed).encode()

    call = Call(
        app=app,
        base_url=base_url,
        method=method,
        path=path,
        fields=fields,
        build=build,
        headers=headers,
    )
    return await request.app[UPSTREAM].call(call)


def forwarded_headers(given: Mapping[str, str]) -> CIMultiDict[str]:
    """The caller's headers worth passing on, where they can be sent on as they came."""
    return CIMultiDict(
        (name, given[name])
        for name in FORWARDED_HEADERS
        # Bytes that are not UTF-8 arrive as surrogates, which cannot be written again.
        if name in given and is_unicode(given[name])
    )


async def read_body(request: web.Request, limits: LimitsConfig, params_left: int) -> Upload:
    """The caller's body as pairs (and spooled files), by its Content-Type.

    Nothing is parsed beyond the limits: form and JSON bodies are read up to
    `max_form_bytes` and parsed to at most `params_left` pairs; a multipart body is read part
    by part, files spooled, up to `max_body_bytes`.
    """
    refuse_declared_size(request, limits.max_body_bytes, "limits.max_body_bytes")
    if not request.body_exists:
        return Upload()
    mimetype = request.content_type
    if mimetype == "multipart/form-data":
        return await read_multipart(
            request,
            MultipartLimits(
                limits.max_body_bytes,
                limits.max_form_bytes,
                params_left,
                BodyTimes.of(limits),
            ),
        )
    is_json = mimetype == "application/json" or mimetype.endswith("+json")
    if mimetype != FORM_TYPE and not is_json:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {quoted_name(mimetype)}: send {FORM_TYPE}, "
            "application/json or multipart/form-data"
        )
    body = await read_capped(request, limits.max_form_bytes, limits, "limits.max_form_bytes")
    if not body:
        return Upload()
    if is_json:
        return Upload(pairs=parse_json(body, params_left, limits.max_value_length))
    if looks_like_json(body):
        raise JsonWithoutContentType()
    return Upload(pairs=parse_urlencoded(body, "form body", params_left))


def multipart_body(fields: dict[str, str], upload: Upload) -> MultipartWriter:
    """Signed text fields first, as the platform's Java client sends them, then the files."""
    writer = MultipartWriter("form-data")
    for name, value in fields.items():
        part = writer.append(value)
        part.headers[hdrs.CONTENT_DISPOSITION] = form_data_disposition(name)
    for file in upload.files:
        part = writer.append_payload(file.payload())
        # The platform's own client always names the file; a server reads a part without a
        # filename as a text field.
        filename = file.filename if file.filename is not None else file.name
        part.headers[hdrs.CONTENT_DISPOSITION] = form_data_disposition(file.name, filename)
    return writer


def form_data_disposition(name: str, filename: str | None = None) -> str:
    """`form-data; name="..."` as browsers write it (RFC 7578 section 4.2, HTML's encoding).

    Names and filenames go as UTF-8 inside quotes with `"`, CR and LF percent-escaped; aiohttp's
    own `name*=utf-8''...` form is not what servers expect (and its writer refuses it).
    """

    def quoted(text: str) -> str:
        escaped = text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        return f'"{escaped}"'

    value = f"form-data; name={quoted(name)}"
    if filename is not None:
        value += f"; filename={quoted(filename)}"
    return value
