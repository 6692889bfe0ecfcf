"""The proxy path: who may go on, reading and signing the request, the upstream call."""
