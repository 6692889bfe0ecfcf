"""Sizes shared by the gateway's readers of the network."""

from __future__ import annotations

# One read of a body or an answer: large enough that a big upload costs few calls, small
# enough that a read never holds much more than the limits allow.
READ_CHUNK_BYTES = 1 << 16
