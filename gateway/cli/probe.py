"""check-config --probe: each app's upstream called once, as the gateway would call it."""

from __future__ import annotations

from gateway.config.model import Config
from gateway.core.clock import SystemClock
from gateway.core.errors import GatewayError
from gateway.metrics import Metrics
from gateway.runtime.resources import call_policy
from gateway.upstream.client import Upstream
from gateway.upstream.sessions import Sessions
from gateway.upstream.tls import TlsSetupError


async def probe_upstreams(config: Config) -> tuple[list[str], bool]:
    """For each app, whether its upstream answers (through its TLS and proxy settings) and
    its clock's offset; and whether all of them did."""
    clock = SystemClock()
    sessions = Sessions(config.pool, config.timeouts.connect_s, config.timeouts.total_s)
    upstream = Upstream(
        sessions, config.limits.max_response_bytes, Metrics(), clock, call_policy(config)
    )
    lines, all_answered = [], True
    try:
        for entry in config.apps.values():
            if entry.uses_sandbox:
                lines.append(f"app {entry.name}: sandbox (embedded; runs on this host's clock)")
                continue
            try:
                Sessions.check_tls(entry)
                answer = await upstream.probe(entry, entry.upstream)
            except (GatewayError, TlsSetupError) as exc:
                all_answered = False
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
    finally:
        await sessions.close()
    return lines, all_answered
