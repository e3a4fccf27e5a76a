"""The agentless poller: scrapes Prometheus/OpenMetrics endpoints itself."""

from __future__ import annotations

from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.samples import adapt_samples
from telemetry_gateway.gateway.components.scrape.config import ScrapeConfig
from telemetry_gateway.schema import POINTS

FORMAT = Format("scrape", "metrics", "scrape", "scraped page", "samples", POINTS, lambda samples: samples, adapt_samples)


def service(config: ScrapeConfig, pipeline, metrics, http_routes: list, location: str = ""):
    from telemetry_gateway.gateway.components.scrape.poller import ScrapePoller

    return [ScrapePoller(config, pipeline, location)]


COMPONENT = Component("scrape", "pollers", ScrapeConfig, (FORMAT,), service=service)
