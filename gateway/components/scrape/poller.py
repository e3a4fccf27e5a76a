"""Agentless scrape poller: fetches Prometheus text / OpenMetrics endpoints itself.

Like Prometheus: one loop per target at a fixed offset within the interval
(plus jitter), a timeout and a body limit per scrape, a sample limit per
target (a scrape over it fails whole), `up`, `scrape_duration_seconds` and
`scrape_samples_scraped` per target, target labels with `honor_labels`
semantics (off: a clashing scraped label becomes `exported_<name>`), and
staleness markers for series that vanish from a target or with the target.
Targets come from the config and from file_sd files, re-read when they
change. Pages are parsed by `adapters.prometheus.exposition`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlparse

import aiohttp
import yaml

from telemetry_gateway.adapters.points import stale_marker
from telemetry_gateway.adapters.probes import add_probe, add_snmp_interfaces, from_blackbox
from telemetry_gateway.adapters.prometheus.exposition import Exposition, InvalidExposition, parse_exposition
from telemetry_gateway.adapters.prometheus.families import FamilyInfo, Sample
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.components.samples import Samples
from telemetry_gateway.gateway.components.scrape.config import ScrapeConfig
from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline

log = logging.getLogger(__name__)
ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


@dataclass(frozen=True)
class Target:
    url: str
    job: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def instance(self) -> str:
        return urlparse(self.url).netloc

    def identity_labels(self) -> dict[str, str]:
        return {**dict(self.labels), "job": self.job, "instance": self.instance}


class ScrapeFailed(Exception):
    pass


def parse(body: str, content_type: str, scrape_ms: int) -> Exposition:
    try:
        page = parse_exposition(body, scrape_ms, "openmetrics" in content_type)
    except InvalidExposition as exc:
        raise ScrapeFailed(f"unparsable exposition: {exc}") from None
    # Prometheus treats a label with an empty value as absent: the same series, whether
    # it comes by scrape or by remote write (where Prometheus has already dropped it).
    for s in page.samples:
        if "" in s.labels.values():
            s.labels = {k: v for k, v in s.labels.items() if v != ""}
    return page


def apply_target_labels(samples: list[Sample], target: Target, honor_labels: bool) -> None:
    own = target.identity_labels()
    for s in samples:
        if honor_labels:
            s.labels = {**own, **s.labels}
            continue
        for name in list(s.labels):
            if name in own:
                s.labels[f"exported_{name}"] = s.labels.pop(name)
        s.labels.update(own)


def read_file_sd(path: Path) -> list[Target]:
    """Targets from a Prometheus file_sd file (JSON or YAML)."""
    groups = yaml.safe_load(path.read_text()) or []
    targets = []
    for group in groups:
        labels = dict(group.get("labels") or {})
        scheme = labels.pop("__scheme__", "http")
        metrics_path = labels.pop("__metrics_path__", "/metrics")
        job = labels.pop("job", path.stem)
        for address in group.get("targets") or []:
            targets.append(Target(f"{scheme}://{address}{metrics_path}", job, tuple(sorted(labels.items()))))
    return targets


class _SampleBudget:
    """Samples all targets may add within one interval."""

    def __init__(self, limit: int, interval: float) -> None:
        self.limit, self.interval = limit, interval
        self.window, self.used = 0, 0

    def take(self, n: int) -> bool:
        window = int(time.monotonic() // self.interval)
        if window != self.window:
            self.window, self.used = window, 0
        if self.used + n > self.limit:
            return False
        self.used += n
        return True


class ScrapePoller:
    def __init__(self, config: ScrapeConfig, pipeline: IngestPipeline, location: str = "") -> None:
        self.config = config
        self._errors = RateLimitedLog(log)
        self.location = location
        self.pipeline = pipeline
        self._tasks: dict[Target, asyncio.Task] = {}
        self._last_series: dict[Target, set[tuple]] = {}
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._budget = _SampleBudget(config.total_sample_limit, config.interval)
        self._session: aiohttp.ClientSession | None = None
        self._discovery: asyncio.Task | None = None
        self._file_state: dict[Path, float] = {}
        self._file_targets: dict[Path, list[Target]] = {}

    @property
    def active(self) -> bool:
        return bool(self.config.targets or self.config.file_sd)

    async def start(self) -> None:
        if not self.active:
            return
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"Accept": ACCEPT}, auto_decompress=True)
        self._reconcile(self._static_targets() + self._refresh_files())
        self._discovery = asyncio.get_running_loop().create_task(self._watch_files(), name="scrape-discovery")

    def _static_targets(self) -> list[Target]:
        return [Target(t.url, t.job, tuple(sorted(t.labels.items()))) for t in self.config.targets]

    def _refresh_files(self) -> list[Target]:
        for path in self.config.file_sd:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                self._file_targets[path] = []
                continue
            if self._file_state.get(path) != mtime:
                try:
                    self._file_targets[path] = read_file_sd(path)
                    self._file_state[path] = mtime
                except (OSError, yaml.YAMLError, AttributeError, TypeError, KeyError, ValueError) as exc:
                    log.warning("file_sd %s unreadable, keeping its last targets: %s", path, exc)
        return [t for targets in self._file_targets.values() for t in targets]

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval)
            try:
                self._reconcile(self._static_targets() + self._refresh_files())
            except Exception:  # a bug must not stop target discovery for good: log it, go on
                self._errors.log(logging.ERROR, "file_sd", "refreshing file_sd targets failed", exc_info=True)

    def _reconcile(self, wanted: list[Target]) -> None:
        wanted_set = set(wanted)
        for target in list(self._tasks):
            if target not in wanted_set:
                self._tasks.pop(target).cancel()
                asyncio.get_running_loop().create_task(self._mark_gone(target))
        for target in wanted_set:
            if target not in self._tasks:
                self._tasks[target] = asyncio.get_running_loop().create_task(self._loop(target), name=f"scrape-{target.url}")

    async def _mark_gone(self, target: Target) -> None:
        """A target left: its series get staleness markers, as Prometheus does."""
        now_ms = int(time.time() * 1000)
        series = self._last_series.pop(target, set())
        stale = [Sample(name, dict(labels), stale_marker(), now_ms) for name, labels in series]
        await self._deliver(target, stale, {})

    def _offset(self, target: Target) -> float:
        digest = hashlib.sha256(target.url.encode()).digest()
        return int.from_bytes(digest[:4], "little") / 2**32 * self.config.interval

    async def _loop(self, target: Target) -> None:
        interval = self.config.interval
        next_at = time.monotonic() + self._offset(target)
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                await self.scrape_once(target)
            except Exception:  # a bug must not end this target's scraping for good: log it, go on
                self._errors.log(logging.ERROR, target.url, "scraping %s failed unexpectedly", target.url, exc_info=True)
            jitter = random.uniform(-self.config.jitter, self.config.jitter) * interval
            next_at = max(next_at + interval + jitter, time.monotonic())

    async def scrape_once(self, target: Target) -> None:
        async with self._semaphore:
            started = time.time()
            scrape_ms = int(started * 1000)
            try:
                scraped = await self._fetch(target, scrape_ms)
                up, error = 1.0, ""
            except (ScrapeFailed, aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError) as exc:
                scraped, up, error = Exposition(), 0.0, f"{type(exc).__name__}: {exc}"
            duration = time.time() - started
        if error:
            log.info("scrape %s failed: %s", target.url, error)
        # Per sample, so off the event loop like the parse; the per-target state changes on the loop,
        # where a target's removal (`_mark_gone`) cannot come between.
        current = await asyncio.to_thread(self._labelled_series, target, scraped.samples)
        scraped.samples += self._stale_since_last(target, current, scrape_ms)
        own = target.identity_labels()
        scraped.samples += [
            Sample("up", dict(own), up, scrape_ms),
            Sample("scrape_duration_seconds", dict(own), duration, scrape_ms),
            Sample("scrape_samples_scraped", dict(own), float(len(scraped.samples)), scrape_ms),
        ]
        await self._deliver(target, scraped.samples, scraped.families, self._probe_series(target, scraped, started))

    def _probe_series(self, target: Target, scraped: Exposition, started: float):
        """Exporter probe results (blackbox /probe, snmp_exporter /snmp) as probe series too."""
        url = urlparse(target.url)
        params = dict(parse_qsl(url.query))
        if url.path.endswith("/probe"):
            result = from_blackbox(scraped.samples, params.get("target", ""), params.get("module", ""),
                                   self.location, int(started * 1e9))
            return (lambda rows: add_probe(rows, result, target.job)) if result else None
        if url.path.endswith("/snmp"):
            return lambda rows: add_snmp_interfaces(rows, scraped.samples, params.get("target", ""), self.location, target.job)
        return None

    async def _fetch(self, target: Target, scrape_ms: int) -> Exposition:
        limit = int(self.config.body_limit_mib * (1 << 20))
        async with self._session.get(target.url) as response:
            if response.status != 200:
                raise ScrapeFailed(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > limit:
                    raise ScrapeFailed(f"body over {limit} bytes")
            content_type = response.headers.get("Content-Type", "")
        # Off the event loop: the text parser is pure Python and a body may be 16 MiB.
        scraped = await asyncio.to_thread(parse, body.decode("utf-8"), content_type, scrape_ms)
        if len(scraped.samples) > self.config.sample_limit:
            raise ScrapeFailed(f"{len(scraped.samples)} samples, over the sample limit {self.config.sample_limit}")
        if not self._budget.take(len(scraped.samples)):
            raise ScrapeFailed("the total sample limit for this interval is used up")
        return scraped

    def _labelled_series(self, target: Target, samples: list[Sample]) -> set[tuple]:
        """Apply the target's labels; the page's series, for staleness."""
        apply_target_labels(samples, target, self.config.honor_labels)
        return {(s.name, tuple(sorted(s.labels.items()))) for s in samples}

    def _stale_since_last(self, target: Target, current: set[tuple], scrape_ms: int) -> list[Sample]:
        previous = self._last_series.get(target, set())
        self._last_series[target] = current
        return [Sample(name, dict(labels), stale_marker(), scrape_ms) for name, labels in previous - current]

    async def _deliver(self, target: Target, samples: list[Sample], families: dict[str, FamilyInfo], extra=None) -> None:
        try:
            await self.pipeline.ingest("scrape", Samples(samples, families.get, extra), Caller("poller", target.instance),
                                       f"scrape:{target.instance}")
        except GatewayError as exc:
            log.warning("scrape of %s not kept: %s", target.url, exc)

    async def shutdown(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
        for task in self._tasks.values():
            task.cancel()
        pending = [*self._tasks.values(), *([self._discovery] if self._discovery else [])]
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

