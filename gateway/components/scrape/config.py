"""`pollers.scrape`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from telemetry_gateway.gateway.config_base import Model, Seconds


class ScrapeTarget(Model):
    url: str = Field(pattern=r"^https?://")
    job: str = Field("scrape", min_length=1)
    labels: dict[str, str] = {}


class ScrapeConfig(Model):
    """The agentless poller: scrapes Prometheus/OpenMetrics endpoints itself."""

    interval: Seconds = 15.0
    # Unset: the smaller of 10 s and the interval, as in Prometheus.
    timeout: Seconds | None = None
    # Each cycle starts up to this fraction of the interval early or late.
    jitter: float = Field(0.1, ge=0.0, lt=0.5)
    concurrency: int = Field(16, gt=0)
    sample_limit: int = Field(50_000, gt=0)
    # Samples all targets may add per interval; past it scrapes fail until the next interval.
    total_sample_limit: int = Field(2_000_000, gt=0)
    body_limit_mib: float = Field(16, gt=0)
    honor_labels: bool = False
    targets: list[ScrapeTarget] = []
    # Prometheus file_sd files (JSON or YAML): [{targets: [host:port], labels: {...}}].
    file_sd: list[Path] = []
    refresh_interval: Seconds = 5.0

    @model_validator(mode="after")
    def _timeout_fits(self) -> ScrapeConfig:
        if self.timeout is None:
            object.__setattr__(self, "timeout", min(10.0, self.interval))  # frozen: set once, here
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self
