"""How the gateway copes with an imperfect platform: its clock, its blips, its outages.

Pure state machines: the caller passes the time in, so they are tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# The platform's `Date` header counts whole seconds: its clock was somewhere in that second.
_DATE_RESOLUTION_S = 1.0


# A Date this far from the host's clock is the sender's mistake, not a drifted clock.
MAX_PLAUSIBLE_OFFSET_S = 7 * 86400.0
# Two answers agree on the offset within this much (each Date is one second coarse).
AGREEMENT_S = 2.0


class Skew:
    """The offset between this host's clock and one platform's, learnt from its Date headers.

    Once the offset passes `max_skew_s`, timestamps are taken from the platform's time, until
    it comes back under (AWS's SDKs correct the same way). One answer alone moves nothing:
    a second must agree with it, so a stray or hostile Date (a proxy's error page, a flipping
    clock) neither sets the time nor floods the log; an absurd one is ignored outright.
    """

    def __init__(self, max_skew_s: float) -> None:
        self.max_skew_s = max_skew_s
        self.offset_s = 0.0
        self.correcting = False
        self._last_sample: float | None = None

    def observe(self, sent_s: float, received_s: float, date_s: float) -> bool:
        """Learns from one answer: sent and received on this host's clock, `date_s` the
        platform's Date header. True when correcting starts or stops."""
        # A round trip longer than the threshold cannot tell skew from slowness.
        if received_s - sent_s > self.max_skew_s:
            return False
        sample = date_s + _DATE_RESOLUTION_S / 2 - (sent_s + received_s) / 2
        if abs(sample) > MAX_PLAUSIBLE_OFFSET_S:
            return False
        previous, self._last_sample = self._last_sample, sample
        if previous is None or abs(sample - previous) > AGREEMENT_S:
            return False
        return self._use(sample)

    @property
    def latest_s(self) -> float | None:
        """What the latest plausible answer said, confirmed or not."""
        return self._last_sample

    def adopt(self) -> bool:
        """The platform refused a timestamp: its latest Date is taken at its word, alone.
        True when correcting starts or stops."""
        if self._last_sample is None:
            return False
        return self._use(self._last_sample)

    def _use(self, offset_s: float) -> bool:
        self.offset_s = offset_s
        correcting = abs(offset_s) > self.max_skew_s
        changed = correcting != self.correcting
        self.correcting = correcting
        return changed

    def now_ms(self, local_ms: int) -> int:
        """The timestamp to sign with."""
        return local_ms + round(self.offset_s * 1000) if self.correcting else local_ms


class Permit(Enum):
    """What the breaker lets a call do."""

    REFUSED = "refused"
    CALL = "call"
    # The one call let through after the cooldown; only it may release the probe.
    PROBE = "probe"


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    """Fails fast after `failures` consecutive failures, for `cooldown_s`; then lets one
    probe through and closes on its success (Envoy's outlier detection, for one host)."""

    failures: int
    cooldown_s: float
    state: BreakerState = BreakerState.CLOSED
    _consecutive: int = 0
    _opened_at: float = 0.0
    _probing: bool = False

    def allow(self, now_s: float) -> Permit:
        """Whether a call may go to the platform now; once the cooldown has passed, one call
        goes as the probe."""
        if self.state is BreakerState.CLOSED:
            return Permit.CALL
        if self.state is BreakerState.OPEN and now_s - self._opened_at >= self.cooldown_s:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit.PROBE
        return Permit.REFUSED

    def retry_after_s(self, now_s: float) -> float:
        return max(0.0, self.cooldown_s - (now_s - self._opened_at))

    def succeeded(self) -> BreakerState | None:
        """Records a success; the new state if it changed."""
        self._consecutive = 0
        self._probing = False
        if self.state is BreakerState.CLOSED:
            return None
        self.state = BreakerState.CLOSED
        return self.state

    def failed(self, now_s: float) -> BreakerState | None:
        """Records a failure; the new state if it changed."""
        self._consecutive += 1
        self._probing = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self._consecutive >= self.failures
        ):
            self.state = BreakerState.OPEN
            self._opened_at = now_s
            return self.state
        return None

    def released(self, permit: Permit) -> None:
        """A call that ended with neither success nor failure (its caller left): if it was
        the probe, the next call may probe."""
        if permit is Permit.PROBE:
            self._probing = False
