"""Reloading the access policy without a restart: on SIGHUP, and when the file changes.

A new version is parsed and validated in full before it replaces the old one
(`Access.swap` replaces one reference); an invalid one is refused with every
problem logged, and the old version stays in force. Each version in force is
named in the log and in `gateway_policy_info{version}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from telemetry_gateway.gateway.access import Access
from telemetry_gateway.gateway.config import PolicyConfig
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.policies.load import PolicyError, load_policy

log = logging.getLogger(__name__)


class PolicyWatch:
    def __init__(self, config: PolicyConfig, store_regions: list[str], access: Access, telemetry: SelfMetrics) -> None:
        self.path = config.file
        self.interval_s = config.reload_interval
        self.store_regions = store_regions
        self.access = access
        self.telemetry = telemetry
        self._unreadable = False
        self._seen = self._digest()  # the content last tried, loaded or refused: no retry until it changes
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        telemetry.policy_loaded(access.current.version)
        log.info("policy %s version %s in force", self.path, access.current.version)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="policy-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def reload_now(self) -> None:
        """SIGHUP: load the file again even if it looks unchanged."""
        self._seen = None
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never stop watching; the old policy stays in force
                log.exception("policy reload failed")

    def check(self) -> None:
        digest = self._digest()
        if digest is None or digest == self._seen:
            return
        self._seen = digest
        try:
            loaded = load_policy(self.path, self.store_regions)
        except PolicyError as exc:
            self.telemetry.policy_refused()
            log.error("policy change refused, version %s stays in force: %s", self.access.current.version, exc)
            return
        self.access.swap(loaded)
        self.telemetry.policy_loaded(loaded.version)
        log.info("policy %s version %s in force", self.path, loaded.version)

    def _digest(self) -> str | None:
        try:
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as exc:
            if not self._unreadable:  # once per spell, not every interval
                log.warning("cannot read policy %s (the loaded version stays in force): %s", self.path, exc.strerror)
            self._unreadable = True
            return None
        self._unreadable = False
        return digest
