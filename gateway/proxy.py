"""The egress handler: pick the app, read the caller's params, sign, forward, relay the answer."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import MultipartWriter, hdrs, web
from multidict import CIMultiDict
from yarl import URL

from gateway.admission import admit
from gateway.config import App
from gateway.endpoints import Endpoint, validate
from gateway.errors import (
    BadRequest,
    BodyTooLarge,
    GatewayError,
    UnsupportedMediaType,
    ValidationFailed,
    quoted_name,
)
from gateway.extras import ACCESS_TOKEN_PATH, USER_INFO_PATH, exchange_code, relay, user_info
from gateway.middlewares import (
    REQUEST_ID_HEADER,
    check_header_size,
    error_response,
    log_access,
    request_id_for,
)
from gateway.params import caller_fields, check_limits, parse_json, parse_urlencoded
from gateway.platform import TRADE_DETAIL_PATH, signed_fields, trade_detail
from gateway.state import BASE_URLS, CLOCK, CONFIG, REQUEST_ID, TOKENS, UPSTREAM, WAITS
from gateway.uploads import Upload, read_multipart
from gateway.upstream import UpstreamResponse
from gateway.waits import MAX_WAIT_S

FORM_TYPE = "application/x-www-form-urlencoded"
WAIT_HEADER = "X-Neu-Wait"
# Caller headers worth passing on; everything else (Authorization, Cookie, X-Neu-*, Host,
# hop-by-hop) stays here.
FORWARDED_HEADERS = ("Accept", "Accept-Language", "User-Agent", "traceparent", "tracestate")
READ_CHUNK_BYTES = 1 << 16


def check_params(endpoint: Endpoint, fields: dict[str, str]) -> None:
    """All of the doc's rules for this endpoint, checked before anything is sent upstream."""
    checked = fields
    if endpoint.path == USER_INFO_PATH and not fields.get("accessToken") and fields.get("openId"):
        # openId instead of accessToken is the gateway's own extension; the cache fills it in.
        checked = {**fields, "accessToken": "from the token cache"}
    problems = validate(endpoint, checked)
    if problems:
        raise ValidationFailed(
            f"invalid parameters for {endpoint.method} {endpoint.path}: " + "; ".join(problems)
        )


async def expect_body(request: web.Request) -> web.Response | None:
    """Refuses a request before the caller sends its body (Expect: 100-continue)."""
    limit = request.app[CONFIG].limits.max_body_bytes
    try:
        check_header_size(request)
        admit(request)
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge()
    except GatewayError as exc:
        # Middlewares do not run for an answer given here, so it is logged here.
        request_id = request_id_for(request)
        log_access(request, request_id, exc.status, 0.0)
        return error_response(exc, request_id)
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None


async def forward(request: web.Request) -> web.Response:
    admitted = admit(request)
    app, path = admitted.app, admitted.path
    config = request.app[CONFIG]
    query = parse_urlencoded(request.rel_url.raw_query_string.encode(), "query string")
    upload = await read_body(request, config.limits.max_body_bytes)
    try:
        pairs = query + upload.pairs
        check_limits(pairs, len(upload.files), config.limits)
        fields = caller_fields(pairs)
        if upload.files and request.method == "GET":
            raise BadRequest("file uploads need POST")
        if admitted.endpoint is not None:
            check_params(admitted.endpoint, fields)

        async def send(final: dict[str, str]) -> UpstreamResponse:
            return await _send(request, app, path, final, upload)

        if path == TRADE_DETAIL_PATH and "wait" in fields:
            return await wait_for_trade(request, app, fields)
        cache = request.app[TOKENS]
        if request.method == "POST" and path == ACCESS_TOKEN_PATH and fields.get("code"):
            return await exchange_code(cache, app.name, fields, send)
        if request.method == "GET" and path == USER_INFO_PATH:
            return await user_info(cache, app.name, fields, send)
        return relay(await send(fields))
    finally:
        upload.close()


async def wait_for_trade(request: web.Request, app: App, fields: dict[str, str]) -> web.Response:
    """tradedetail with `wait=N`: answered once the trade leaves processing, or after N s."""
    wait = fields.pop("wait")
    if not wait.isdigit() or not 1 <= int(wait) <= MAX_WAIT_S:
        raise ValidationFailed(f"wait: must be a whole number of seconds from 1 to {MAX_WAIT_S}")
    trade_no = fields["tradeNo"]
    base_url = request.app[BASE_URLS][app.name]
    upstream, clock = request.app[UPSTREAM], request.app[CLOCK]

    async def fetch() -> UpstreamResponse:
        return await trade_detail(upstream, base_url, app, trade_no, clock.now_ms())

    answer, settled = await request.app[WAITS].wait(app.name, trade_no, int(wait), fetch)
    response = relay(answer)
    response.headers[WAIT_HEADER] = "done" if settled else "timeout"
    return response


async def _send(
    request: web.Request, app: App, path: str, fields: dict[str, str], upload: Upload
) -> UpstreamResponse:
    """Sign the fields and send them to the app's upstream as the platform expects them."""
    signed = signed_fields(fields, app, request.app[CLOCK].now_ms())
    url = request.app[BASE_URLS][app.name] + path
    headers = CIMultiDict(
        (name, request.headers[name]) for name in FORWARDED_HEADERS if name in request.headers
    )
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    data: bytes | MultipartWriter | None = None
    if request.method == "GET":
        url += "?" + urlencode(signed)
    elif upload.files:
        data = multipart_body(signed, upload)
    else:
        headers[hdrs.CONTENT_TYPE] = FORM_TYPE
        data = urlencode(signed).encode()
    # encoded=True: urlencode() already produced the exact bytes the sign was made for.
    return await request.app[UPSTREAM].request(
        request.method, URL(url, encoded=True), headers=headers, data=data
    )


async def read_body(request: web.Request, max_body_bytes: int) -> Upload:
    """The caller's body as pairs (and spooled files), by its Content-Type."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise BodyTooLarge()
    if not request.body_exists:
        return Upload()
    mimetype = request.content_type
    if mimetype == "multipart/form-data":
        return await read_multipart(request, max_body_bytes)
    body = await _read_capped(request, max_body_bytes)
    if not body:
        return Upload()
    if mimetype == FORM_TYPE:
        return Upload(pairs=parse_urlencoded(body, "form body"))
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return Upload(pairs=parse_json(body))
    raise UnsupportedMediaType(
        f"unsupported Content-Type {quoted_name(mimetype)}: send {FORM_TYPE}, "
        "application/json or multipart/form-data"
    )


async def _read_capped(request: web.Request, max_body_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > max_body_bytes:
            raise BodyTooLarge()
    return bytes(body)


def multipart_body(fields: dict[str, str], upload: Upload) -> MultipartWriter:
    """Signed text fields first, as the platform's Java client sends them, then the files."""
    writer = MultipartWriter("form-data")
    for name, value in fields.items():
        part = writer.append(value)
        part.headers[hdrs.CONTENT_DISPOSITION] = form_data_disposition(name)
    for file in upload.files:
        part = writer.append_payload(file.spool.payload(file.content_type))
        part.headers[hdrs.CONTENT_DISPOSITION] = form_data_disposition(file.name, file.filename)
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
