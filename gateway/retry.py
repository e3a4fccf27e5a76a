"""Retry policy: capped, jittered exponential backoff that honours server hints.

One policy object serves every outbound path. It only computes delays and
decides whether to go on; the caller sleeps, so shutdown can interrupt the
wait (`RetryPolicy.wait` returns False once the stop event is set).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from telemetry_gateway.gateway.errors import GatewayError


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2  # +/- this fraction of each delay
    max_attempts: int = 0  # 0: until stopped

    def delay(self, attempt: int, hint_s: float | None = None) -> float:
        """Delay before retry number `attempt` (1-based); a server hint wins if longer."""
        base = min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))
        jittered = base * (1 + random.uniform(-self.jitter, self.jitter))
        return max(jittered, hint_s or 0.0)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        if not isinstance(exc, GatewayError) or not exc.retryable:
            return False
        return self.max_attempts == 0 or attempt < self.max_attempts

    async def wait(self, attempt: int, stop: asyncio.Event, hint_s: float | None = None) -> bool:
        """Sleep before the next attempt; False when `stop` was set meanwhile."""
        try:
            await asyncio.wait_for(stop.wait(), self.delay(attempt, hint_s))
        except asyncio.TimeoutError:
            return True
        return False
