"""What the gateway does beyond signing for two endpoints: the code exchange and user/info.

The exchange goes through the token cache, so a code is exchanged once however often it is
sent; user/info may name the user by `openId` instead of `accessToken`, and the cached token
is put in; a token the platform refuses is evicted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from gateway.core.errors import TokenRequired
from gateway.core.headers import ATTEMPTS_HEADER, CACHE_HEADER, SIGN_REJECTED_HEADER
from gateway.core.platform import is_sign_refusal
from gateway.upstream.refusals import sign_refused
from gateway.upstream.tokens import CachedAnswer, TokenCache, says_token_invalid
from gateway.upstream.transport import Answer

Send = Callable[[dict[str, str]], Awaitable[Answer]]


def relay(answer: Answer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    if answer.attempts > 1:
        response.headers[ATTEMPTS_HEADER] = str(answer.attempts)
    if sign_refused(answer):
        response.headers[SIGN_REJECTED_HEADER] = "1"
    return response


def _answer(response: Answer) -> CachedAnswer:
    return CachedAnswer(response.status, response.headers.get(hdrs.CONTENT_TYPE, ""), response.body)


async def exchange_code(
    cache: TokenCache, app: str, fields: dict[str, str], send: Send
) -> web.Response:
    fetched: list[Answer] = []

    async def fetch() -> CachedAnswer:
        fetched.append(await send(fields))
        return _answer(fetched[0])

    answer, state = await cache.exchange(app, fields["code"], fields.get("scope", ""), fetch)
    if fetched and state == "miss":
        response = relay(fetched[0])
    else:
        response = web.Response(
            status=answer.status, body=answer.body, headers={hdrs.CONTENT_TYPE: answer.content_type}
        )
        # Shared with the exchange that fetched it, refusal and all (only a success is cached).
        if state == "shared" and is_sign_refusal(answer.status, answer.body):
            response.headers[SIGN_REJECTED_HEADER] = "1"
    response.headers[CACHE_HEADER] = state
    return response


async def user_info(
    cache: TokenCache, app: str, fields: dict[str, str], send: Send
) -> web.Response:
    token = fields.get("accessToken", "")
    injected = False
    if not token and fields.get("openId"):
        # The platform's user/info takes accessToken only; openId is the gateway's extension.
        found = await cache.token_for(app, fields.pop("openId"))
        if found is None:
            raise TokenRequired()
        token = fields["accessToken"] = found
        injected = True
    answer = await send(fields)
    if token and says_token_invalid(_answer(answer)):
        await cache.evict(app, token)
    response = relay(answer)
    if injected:
        response.headers[CACHE_HEADER] = "hit"
    return response
