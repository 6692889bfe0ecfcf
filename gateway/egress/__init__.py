"""The proxy handlers: who may go on, reading and signing the request, rate limits, uploads."""
