"""Rate-limited logging for what clients cause: one line per kind of event per interval.

A hostile or broken client can cause an error per request; logging each at
ERROR with a traceback would flood the log (and the disk) and hide what
matters. Each kind of event logs one line at most every `interval_s`, with
how many like it were not logged since.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args, exc_info: bool | BaseException = False) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval_s) < self.interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} more like it in the last {self.interval_s:g}s not logged)"
        self.logger.log(level, message, *args, exc_info=exc_info)

    def warning(self, kind: str, message: str, *args) -> None:
        self.log(logging.WARNING, kind, message, *args)
