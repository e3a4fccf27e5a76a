"""Memory limiter: refuse new data before the gateway holds more than it may.

It counts what the gateway itself holds, not the resident set size: the
decoded size of every request being processed (estimated from its body
before any work starts, so one large request is counted up front) plus the
bytes of batches waiting in writer queues. RSS is a poor signal because
Python seldom returns memory to the OS: a limiter on RSS, once tripped,
stays tripped.

Like the Collector's memory_limiter it has hysteresis: once over the limit
it refuses until use falls below `resume_fraction` of it. It answers with
backpressure (UNAVAILABLE / 429 + retry hints), never by dropping.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from telemetry_gateway.gateway.errors import Throttled
from telemetry_gateway.gateway.quotas import TenantThrottled

# A request decodes into Python objects and Arrow columns several times its
# wire size. Measured with tracemalloc while adapting the loadtest payloads:
# peak Python allocations 9x the body for OTLP metrics with 10 attributes,
# 3x for logs; the Arrow tables they become, 2x.
EXPANSION = 10


class MemoryLimiter:
    def __init__(self, limit_bytes: int, retry_after_s: float = 1.0, queued: Callable[[], int] = lambda: 0,
                 resume_fraction: float = 0.8) -> None:
        self.limit = limit_bytes
        self.retry_after_s = retry_after_s
        self.queued = queued
        self.resume_fraction = resume_fraction
        self.in_flight = 0
        self.by_tenant: dict[str, int] = {}  # requests' bytes held, per tenant
        self.refusing = False

    def used(self) -> int:
        return self.in_flight + self.queued()

    @contextmanager
    def hold(self, body_bytes: int, tenant: str = "", share: float = 1.0) -> Iterator[None]:
        """Admit a request of `body_bytes` (or throttle) and count it until it is done; a tenant with a
        `share` below 1 may hold at most that part of the limit in requests at once."""
        cost = body_bytes * EXPANSION
        self._admit(cost)
        self._admit_tenant(tenant, share, cost)
        self.in_flight += cost
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + cost
        try:
            yield
        finally:
            self.in_flight -= cost
            self.by_tenant[tenant] -= cost

    def _admit_tenant(self, tenant: str, share: float, cost: int) -> None:
        held = self.by_tenant.get(tenant, 0)
        if self.limit and share < 1.0 and held > 0 and held + cost > self.limit * share:
            raise TenantThrottled(f"the tenant holds {held >> 20} MiB of its {int(self.limit * share) >> 20} MiB share "
                                  "of the memory limit; retry later", self.retry_after_s)

    def _admit(self, cost: int) -> None:
        if not self.limit:
            return
        used = self.used()
        if self.refusing and used < self.limit * self.resume_fraction:
            self.refusing = False
        # A request alone is always admitted, else a big one could never pass.
        if (self.refusing or used + cost > self.limit) and used > 0:
            self.refusing = True
            raise Throttled(
                f"gateway holds {used >> 20} MiB of a {self.limit >> 20} MiB memory limit; retry later",
                self.retry_after_s,
            )
