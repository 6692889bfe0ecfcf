"""An emulator of the SuperApp platform's OpenAPI, for development and tests.

It verifies requests as the platform does, and plays the platform's side of login, tokens,
trades, payment callbacks and messages. It imports only the pure core of the
gateway (signing, verification, params, endpoints, jwt, clock) and aiohttp: never the proxy
or its upstream client.
"""
