"""The set of named regional stores. Routing picks a name; this maps it to a store."""

from __future__ import annotations

import os

from telemetry_gateway.gateway.config import StoreConfig
from telemetry_gateway.gateway.store.base import RegionStore
from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.gateway.store.server import ServerStore


FAULTS_HOOK = "TELEMETRY_GATEWAY_FAULTS"


def build_store(name: str, config: StoreConfig) -> RegionStore:
    region = config.regions[name]
    if region.backend == "embedded":
        store: RegionStore = EmbeddedStore(name, region.database, config.path, config.retention_days)
    else:
        store = ServerStore(name, region.database, region.url or "", config.retention_days)
    if os.environ.get(FAULTS_HOOK) == "1":
        # The one test hook: only tests set it, and only then is the fault module imported.
        from telemetry_gateway.gateway.testing.faults import FaultyStore

        store = FaultyStore(store, config.path / "faults")
    return store


class RegionStores:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.stores: dict[str, RegionStore] = {}

    def open(self) -> None:
        for name in self.config.regions:
            store = build_store(name, self.config)
            store.open()
            self.stores[name] = store

    def __getitem__(self, region: str) -> RegionStore:
        return self.stores[region]

    def __iter__(self):
        return iter(self.stores.values())

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
