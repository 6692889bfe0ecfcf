"""The platform's payment notifications: POSTed to the trade's notifyUrl, retried with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlencode

import aiohttp

from gateway.core import signing
from gateway.core.clock import Clock
from gateway.core.platform import backoff_s
from gateway.sandbox.world import Settings, Trade

# Its records reach the gateway's handlers, and their redaction, when run embedded.
log = logging.getLogger("neu_gateway.sandbox")
ATTEMPT_TIMEOUT_S = 10
MAX_BACKOFF_S = 60


def notification_fields(trade: Trade, appid: str, secret: str, now_ms: int) -> dict[str, str]:
    """The callback's form fields, signed with the app's secret by the platform's rule."""
    detail = trade.detail
    fields = {
        "tradeNo": detail["tradeNo"],
        "outTradeNo": detail["outTradeNo"],
        "transactionStatus": str(detail["transactionStatus"]),
        "amount": str(detail["amount"]),
        "currency": detail["currency"],
        "appid": appid,
        "timestamp": str(now_ms),
    }
    fields["sign"] = signing.sign(fields, secret)
    return fields


class Notifier:
    """Delivers each final status of a trade, in the background, until a 2xx or give-up."""

    def __init__(
        self,
        secrets: dict[str, str],
        settings: Settings,
        clock: Clock,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._secrets = secrets
        self._settings = settings
        self._clock = clock
        # Told of each attempt as it starts and ends, for the simulator page's live view.
        self.on_change = on_change or (lambda kind: None)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def set_secret(self, appid: str, secret: str) -> None:
        """Callbacks are signed with the app's newest secret, as the platform would."""
        self._secrets[appid] = secret

    def notify(self, trade: Trade) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(trade))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, trade: Trade) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)
            )
        status = trade.status
        appid = trade.detail["appId"]
        for attempt in range(1, self._settings.notify_attempts + 1):
            fields = notification_fields(trade, appid, self._secrets[appid], self._clock.now_ms())
            record: dict[str, object] = {
                "attempt": attempt,
                "transactionStatus": status,
                "at": self._clock.now_ms(),
            }
            trade.notifications.append(record)
            self.on_change("trades")
            try:
                async with self._session.post(
                    trade.notify_url,
                    data=urlencode(fields),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    allow_redirects=False,
                ) as response:
                    record["httpStatus"] = response.status
                    if 200 <= response.status < 300:
                        trade.detail["notifySuccess"] = True
                        self.on_change("trades")
                        return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                record["error"] = type(exc).__name__
            if attempt < self._settings.notify_attempts:
                wait_s = backoff_s(attempt, self._settings.notify_backoff_s, MAX_BACKOFF_S)
                record["nextAttemptAt"] = self._clock.now_ms() + round(wait_s * 1000)
                self.on_change("trades")
                await self._clock.sleep(wait_s)
        trade.detail["notifySuccess"] = False
        if trade.notifications:
            trade.notifications[-1]["gaveUp"] = True
        self.on_change("trades")
        log.warning(
            "sandbox gave up notifying %s of trade %s after %d attempts",
            trade.notify_url,
            trade.detail["tradeNo"],
            self._settings.notify_attempts,
        )

    async def idle(self) -> None:
        """Returns once no notification is in flight."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
