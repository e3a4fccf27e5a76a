from __future__ import annotations

import os
import uuid

import pytest

from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.gateway.store.server import ServerStore


def _server_url() -> str:
    url = os.environ.get("CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_URL is not set: no ClickHouse server to test against")
    return url


@pytest.fixture(params=["embedded", "server"])
def make_store(request, embedded_path):
    """Build (unopened) stores on the backend under test, each in a fresh database."""
    made = []

    def make(database: str | None = None, retention_days: int = 0):
        database = database or f"t_{uuid.uuid4().hex[:12]}"
        if request.param == "embedded":
            store = EmbeddedStore("default", database, embedded_path, retention_days)
        else:
            store = ServerStore("default", database, _server_url(), retention_days)
        made.append(store)
        return store

    if request.param == "server":
        _server_url()
    yield make
    for store in made:
        try:
            store.execute(f"DROP DATABASE IF EXISTS `{store.database}`")
        except Exception:
            pass
    if request.param == "server":
        for store in made:
            store.close()


@pytest.fixture
def store(make_store):
    s = make_store()
    s.open()
    return s
