"""Per-tenant limits: one tenant's flood is throttled without touching another's acceptance or series budget.

* Rates (`items_per_second`, `requests_per_second`): a token bucket per
  tenant, `burst_seconds` deep. A request is checked before it is decoded;
  its items are paid for once they are counted, so a large request may take
  the bucket into debt, and the tenant's next requests wait until it is paid
  back. Throttled requests get 429 / RESOURCE_EXHAUSTED with the wait.
* Series (`max_series`): each tenant's known metric series; points of a new
  series past the budget are refused (partial success, code series_limit),
  and points of known series are still kept. A series unseen for one to two
  hours leaves the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from telemetry_gateway.gateway.errors import Throttled
from telemetry_gateway.policies.model import TenantLimits

SERIES_IDLE_S = 3600.0


class TenantThrottled(Throttled):
    """A tenant over its own rate: retryable, answered RESOURCE_EXHAUSTED with RetryInfo (gRPC) or 429."""


@dataclass
class _Bucket:
    level: float
    at: float

    def refill(self, rate: float, depth: float, now: float) -> None:
        self.level = min(depth, self.level + (now - self.at) * rate)
        self.at = now


@dataclass
class _TenantRates:
    items: _Bucket
    requests: _Bucket


class Rates:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._tenants: dict[str, _TenantRates] = {}

    def admit(self, tenant: str, limits: TenantLimits) -> None:
        """Raise TenantThrottled while the tenant's requests or items run ahead of its rates."""
        now = self._clock()
        state = self._state(tenant, limits, now)
        waits = []
        for bucket, rate, cost in ((state.requests, limits.requests_per_second, 1.0),
                                   (state.items, limits.items_per_second, 0.0)):
            if not rate:
                continue
            bucket.refill(rate, rate * limits.burst_seconds, now)
            if bucket.level < cost:
                waits.append((cost - bucket.level) / rate)
        if waits:
            wait = max(waits)
            raise TenantThrottled(f"the tenant is over its rate limit; retry in {wait:.1f}s", max(wait, 0.1))
        if limits.requests_per_second:
            state.requests.level -= 1

    def spend(self, tenant: str, limits: TenantLimits, items: int) -> None:
        if limits.items_per_second and tenant in self._tenants:
            self._tenants[tenant].items.level -= items

    def _state(self, tenant: str, limits: TenantLimits, now: float) -> _TenantRates:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _TenantRates(
                _Bucket(limits.items_per_second * limits.burst_seconds, now),
                _Bucket(limits.requests_per_second * limits.burst_seconds, now))
        return state


@dataclass
class SeriesBudget:
    """One tenant's known series. Used on the adapter thread only, for every request of the tenant.

    Series are remembered in two generations, rotated every SERIES_IDLE_S: a series is known while it
    is in either, so one unseen for one to two idle periods leaves the budget. A request whose series
    are all known costs one set union in C (measured: the per-series last-seen dict it replaced took
    a tenth of the adapter thread on 2000-point requests).
    """

    current: set = field(default_factory=set)
    previous: set = field(default_factory=set)
    clock: object = time.monotonic
    rotated: float | None = None

    def admit(self, series_ids: pa.Array, limit: int) -> np.ndarray | None:
        """Rows of series that do not fit the budget (None when every row fits); known series are
        always kept, new ones in the order they first appear until the budget is full."""
        self._rotate(self.clock())
        ids = series_ids.to_numpy(zero_copy_only=False)
        batch = set(ids.tolist())
        new = batch - self.current - self.previous
        refused = []
        if new:
            known = len(self.current | self.previous)
            if known + len(new) > limit:
                _, first = np.unique(ids, return_index=True)  # only past the budget: the order they came in
                ordered = [s for s in ids[np.sort(first)].tolist() if s in new]
                refused = ordered[max(0, limit - known):]
                batch.difference_update(refused)
        self.current |= batch
        return np.isin(ids, refused) if refused else None

    def _rotate(self, now: float) -> None:
        if self.rotated is None:
            self.rotated = now
        elif now - self.rotated >= SERIES_IDLE_S:
            self.previous, self.current, self.rotated = self.current, set(), now
