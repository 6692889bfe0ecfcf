"""A lean HTTP/1.1 client for the direct route to the platform.

Signed calls to one upstream need little of a general client: no cookies, redirects, proxies
or streamed bodies, just a keep-alive pool, a strict parser (httptools, llhttp as Node.js
uses it), TLS and bounded reads. Doing only that costs a fraction of aiohttp's client per
call. Calls through a forward proxy, and multipart uploads, still go through aiohttp.

connection: one connection and its parser; pool: the kept-alive connections to an origin
and the cap on them; wire: the request's head, the answer's Content-Encoding undone;
transport: the Transport over it all, with its errors named.
"""
