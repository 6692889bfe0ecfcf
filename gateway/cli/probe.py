"""check-config --probe: each app's upstream called as the gateway would call it: once
unsigned (reachable, TLS, proxy, its clock), then once signed, to prove the app's secret.

The signed call is harmless: a tradedetail of a trade that cannot exist. The platform checks
the sign before it looks for the trade, so "not found" (or any refusal but the sign's) proves
the secret, and a sign error disproves it.
"""

from __future__ import annotations

import uuid

from gateway import logs
from gateway.config.model import App, Config
from gateway.core.clock import SystemClock
from gateway.core.errors import GatewayError
from gateway.core.platform import (
    is_sign_refusal,
    is_timestamp_refusal,
    platform_status,
    refusal_message,
)
from gateway.metrics import Metrics
from gateway.runtime.resources import call_policy
from gateway.upstream.client import Upstream
from gateway.upstream.details import trade_detail
from gateway.upstream.sessions import Sessions
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.transport import Answer

# A tradeNo no platform issues (its own are 32 hex digits), new for each probe.
PROBE_TRADE_PREFIX = "neu-gateway-probe-"
# Enough of the platform's message to recognise it by.
MAX_MSG_CHARS = 100


async def probe_upstreams(config: Config) -> tuple[list[str], bool]:
    """For each app, whether its upstream answers (through its TLS and proxy settings), its
    clock's offset, and whether the platform accepts its sign; and whether all of them
    passed."""
    clock = SystemClock()
    sessions = Sessions(config.pool, config.timeouts.connect_s, config.timeouts.total_s)
    upstream = Upstream(
        sessions,
        config.limits.max_response_bytes,
        Metrics(),
        clock,
        call_policy(config),
        # The probe's own line says so, in words for the command line.
        report_sign_refusals=False,
    )
    lines, all_passed = [], True
    try:
        for entry in config.apps.values():
            if entry.uses_sandbox:
                lines.append(
                    f"app {entry.name}: sandbox (embedded; runs on this host's clock and "
                    "checks signs with this config's secret)"
                )
                continue
            try:
                Sessions.check_tls(entry)
                answer = await upstream.probe(entry, entry.upstream)
            except (GatewayError, TlsSetupError) as exc:
                all_passed = False
                message = exc.msg if isinstance(exc, GatewayError) else str(exc)
                lines.append(f"app {entry.name}: {entry.upstream} failed: {message}")
                continue
            offset = upstream.offset_s(entry.upstream)
            corrected = (
                "; beyond clock.max_skew_s, so the gateway signs with the platform's time"
                if abs(offset) > config.clock.max_skew_s
                else ""
            )
            lines.append(
                f"app {entry.name}: {entry.upstream} answered HTTP {answer.status}; "
                f"the platform's clock is {offset:+.1f} s from this host's{corrected}"
            )
            line, passed = await probe_sign(upstream, entry)
            lines.append(line)
            all_passed = all_passed and passed
    finally:
        await sessions.close()
    return lines, all_passed


async def probe_sign(upstream: Upstream, app: App) -> tuple[str, bool]:
    """One signed tradedetail of a trade that cannot exist: what it says of the app's sign."""
    trade_no = PROBE_TRADE_PREFIX + uuid.uuid4().hex[:12]
    try:
        answer = await trade_detail(upstream, app.upstream, app, trade_no)
    except GatewayError as exc:
        return f"app {app.name}: the signed call failed: {exc.msg}", False
    return sign_verdict(app, answer)


def sign_verdict(app: App, answer: Answer) -> tuple[str, bool]:
    """The probe's line for the answer to its signed call, and whether the sign is proven."""
    if is_sign_refusal(answer.status, answer.body):
        return (
            f"app {app.name}: the platform refused the sign: the secret for apps.{app.name} "
            "is wrong (or was rotated on the platform)",
            False,
        )
    status = platform_status(answer.body)[0]
    said = logs.clipped(refusal_message(answer.body), MAX_MSG_CHARS)
    if status is not None and status != 401 and not is_timestamp_refusal(answer.body):
        return f"app {app.name}: sign accepted (a tradedetail of no trade: {status} {said})", True
    # No envelope, a 401 that is not the sign's (an unknown appid), or a timestamp: the
    # platform never got as far as the sign.
    envelope = "" if status is None else f", status {status} {said}"
    return (
        f"app {app.name}: the sign was not checked: a signed tradedetail answered HTTP "
        f"{answer.status}{envelope}",
        False,
    )
