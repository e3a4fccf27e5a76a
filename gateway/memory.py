"""Memory limiter: refuse new data before the process passes its memory limit.

Reads the resident set size from /proc/self/statm (a few microseconds) at
most every 50 ms, and throttles requests while it is over the limit, like the
Collector's memory_limiter processor but answering with backpressure
(UNAVAILABLE / 429) instead of dropping.
"""

from __future__ import annotations

import os
import time

from gateway.errors import Throttled

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * _PAGE


class MemoryLimiter:
    def __init__(self, limit_bytes: int, retry_after_s: float = 1.0, interval_s: float = 0.05) -> None:
        self.limit = limit_bytes
        self.retry_after_s = retry_after_s
        self.interval_s = interval_s
        self._checked = 0.0
        self._rss = 0

    def check(self) -> None:
        if not self.limit:
            return
        now = time.monotonic()
        if now - self._checked >= self.interval_s:
            self._rss, self._checked = resident_bytes(), now
        if self._rss >= self.limit:
            raise Throttled(
                f"gateway memory {self._rss >> 20} MiB is at its limit of {self.limit >> 20} MiB; retry later",
                self.retry_after_s,
            )
