"""The platform client.

client: Upstream, the policy over a call (retries, breaker, clock skew), and call: the call
it is given, signed afresh for each attempt. transport: the one interface under it,
send(Request) -> Answer, with two implementations, each owning its errors: lean/ (the lean
HTTP/1.1 client, for direct calls) and aiohttp_transport (aiohttp's client, for a proxy or an
upload; aiohttp_client holds every use of its internals). sessions: both, from one pool
config. Beside them: tokens and stores (the accessToken cache), waits (trade waits),
details (the gateway's own tradedetail calls).
"""
