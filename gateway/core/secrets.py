"""Values that must not print themselves: app secrets and caller tokens."""

from __future__ import annotations

import hmac

# The sandbox's public demo app (README, gateway.yaml): never a real app's credentials, so
# nothing is at stake when they are written in a file or shown in `ps`.
DEMO_APPID = "demo-appid"
DEMO_SECRET = "demo-secret"  # noqa: S105 - the documented, public sandbox demo secret
# The demo app's delivery signing secret, which the sandbox's stand-in service verifies with:
# public on purpose too (its key reads demo-signing-key-public-on-purpose).
DEMO_SIGNING_SECRET = "whsec_ZGVtby1zaWduaW5nLWtleS1wdWJsaWMtb24tcHVycG9zZQ=="  # noqa: S105


class Secret:
    """A secret value that does not print itself; `reveal()` only where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, presented: str) -> bool:
        """Constant-time comparison, so timing tells nothing about the value."""
        # A header's bytes that are not UTF-8 come as surrogates; compare the bytes sent.
        return hmac.compare_digest(
            self._value.encode(), presented.encode("utf-8", "surrogateescape")
        )

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__
