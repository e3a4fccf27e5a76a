"""Per-tenant state: what adapters and stages remember between requests.

One tenant's attribute sets, Prometheus metadata, series budgets and
per-series stage state never spill into another's. States are built on a
tenant's first request.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from telemetry_gateway.adapters.attributes import AttributeLimits, AttributeSets
from telemetry_gateway.adapters.normalize import Names
from telemetry_gateway.adapters.prometheus.families import FamilyInfo
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata
from telemetry_gateway.gateway.quotas import SeriesBudget
from telemetry_gateway.gateway.stages import Chain

log = logging.getLogger(__name__)


def attribute_sets(config) -> AttributeSets:
    """A tenant's attribute sets under the gateway's normalize and limits config (in every process alike)."""
    n, limits = config.normalize, config.limits
    return AttributeSets(names=Names(n.metric_names, n.attribute_names),
                         limits=AttributeLimits(limits.max_attributes, limits.max_attribute_length))


@dataclass
class TenantState:
    tenant: str
    sets: AttributeSets
    prometheus: PrometheusMetadata
    chain: Chain
    series: SeriesBudget = field(default_factory=SeriesBudget)


class Tenants:
    def __init__(self, build: Callable[[str], TenantState]) -> None:
        self._build = build
        self._states: dict[str, TenantState] = {}

    def get(self, tenant: str) -> TenantState:
        state = self._states.get(tenant)
        if state is None:
            state = self._states[tenant] = self._build(tenant)
        return state

    def states(self) -> list[TenantState]:
        return list(self._states.values())


class SavedFamilies:
    """Prometheus family metadata per tenant, kept in a file so a restart does not forget it.

    Prometheus resends metadata only every `metadata_config.send_interval`
    (1 minute by default); a gateway that forgot it at restart would type a
    histogram's `_count` and `_sum` as gauges until then, splitting one series
    into two kinds. Saved when it changes, at most every few seconds, and at
    shutdown; written to a temporary file and renamed, so a crash leaves the
    previous version.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded: dict[str, dict[str, FamilyInfo]] = self._load()

    def _load(self) -> dict[str, dict[str, FamilyInfo]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring saved Prometheus metadata %s: %s", self.path, exc)
            return {}
        return {tenant: {name: FamilyInfo(*info) for name, info in families.items()}
                for tenant, families in data.items()}

    @staticmethod
    def snapshot(states: list[TenantState]) -> dict | None:
        """The families of every tenant, if any changed; run where the adapters run (they mutate them)."""
        if not any(s.prometheus.changed for s in states):
            return None
        for s in states:
            s.prometheus.changed = False
        return {s.tenant: {name: [i.type, i.help, i.unit] for name, i in s.prometheus.families.items()} for s in states}

    def save(self, snapshot: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot, separators=(",", ":")))
        os.replace(tmp, self.path)
