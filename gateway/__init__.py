"""neu-gateway: the signing egress gateway for the SuperApp OpenAPI."""

__version__ = "0.1.0"
