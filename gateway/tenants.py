"""Per-tenant state: what adapters and stages remember between requests.

One tenant's attribute sets, Prometheus metadata, series budgets and
per-series stage state never spill into another's. States are built on a
tenant's first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata
from telemetry_gateway.gateway.stages import Chain


@dataclass
class TenantState:
    tenant: str
    sets: AttributeSets
    prometheus: PrometheusMetadata
    chain: Chain


class Tenants:
    def __init__(self, build: Callable[[str], TenantState]) -> None:
        self._build = build
        self._states: dict[str, TenantState] = {}

    def get(self, tenant: str) -> TenantState:
        state = self._states.get(tenant)
        if state is None:
            state = self._states[tenant] = self._build(tenant)
        return state
