"""Fault switches for tests of the embedded store, off unless asked for.

Only when the environment has TELEMETRY_GATEWAY_FAULTS=1 does the gateway
wrap its stores in `FaultyStore`, which looks for files in `<store.path>/faults/`
before and after each insert:

* `store-down`: inserts fail as if the store were unreachable (retryable);
* `reject-service`: an insert with a row whose service_name equals the file's
  text is refused permanently (as ClickHouse refuses bad data);
* `reject-table`: the same, only for inserts into one table; the file holds
  `table:service`;
* `crash-after-insert`: the process exits (like SIGKILL) right after an insert
  (into the table the file names, or any when it is empty) succeeds and before
  the spool records it as done; the file is consumed.

Tests create and delete the files; nothing else does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.gateway.errors import StoreRejected, StoreUnavailable
from telemetry_gateway.gateway.store.base import RegionStore
from telemetry_gateway.schema import Table

class FaultyStore(RegionStore):
    def __init__(self, inner: RegionStore, faults: Path) -> None:
        super().__init__(inner.region, inner.database, inner.retention_days)
        self.inner = inner
        self.faults = faults

    def execute(self, sql: str, params: dict | None = None, fmt: str = "CSV") -> bytes:
        return self.inner.execute(sql, params, fmt)

    def query(self, sql: str, fmt: str) -> bytes:
        return self.inner.query(sql, fmt)

    def open(self) -> None:
        self.inner.open()
        self.series = self.inner.series  # primed by the inner store

    def close(self) -> None:
        self.inner.close()

    def output_formats(self) -> frozenset[str]:
        return self.inner.output_formats()

    def insert(self, table: Table, rows: pa.Table, token: str) -> None:
        if (self.faults / "store-down").exists():
            raise StoreUnavailable("fault injected: the store is down")
        marker = self.faults / "reject-service"
        if marker.exists() and _has_service(rows, marker.read_text().strip()):
            raise StoreRejected("fault injected: Code: 117. DB::Exception: incorrect data")
        marker = self.faults / "reject-table"
        if marker.exists():
            refused_table, _, service = marker.read_text().strip().partition(":")
            if table.name == refused_table and _has_service(rows, service):
                raise StoreRejected(f"fault injected into {table.name}: Code: 117. DB::Exception: incorrect data")
        self.inner.insert(table, rows, token)
        crash = self.faults / "crash-after-insert"
        if crash.exists() and crash.read_text().strip() in ("", table.name):
            crash.unlink()
            os._exit(137)


def _has_service(rows: pa.Table, service: str) -> bool:
    return "service_name" in rows.column_names and pc.any(pc.equal(rows.column("service_name"), service)).as_py()
