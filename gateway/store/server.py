"""A ClickHouse server through clickhouse-connect (HTTP interface).

Inserts go as Arrow with the batch's dedup token; the same DDL as the embedded
store applies. Use ReplicatedMergeTree tables on clusters (create them
yourself from `schema.ddl.create_table(..., engine=...)`): the token then
deduplicates across replicas too.
"""

from __future__ import annotations

import threading

import pyarrow as pa

from telemetry_gateway.gateway.store.base import RegionStore, check_token, classify
from telemetry_gateway.schema import Table


class ServerStore(RegionStore):
    def __init__(self, region: str, database: str, url: str, retention_days: int = 0, timeout_s: float = 30.0) -> None:
        super().__init__(region, database, retention_days)
        self._url = url
        self._timeout = timeout_s
        self._client = None
        # clickhouse-connect clients are not safe to share across threads at once.
        self._lock = threading.Lock()

    def _get_client(self):
        import clickhouse_connect

        if self._client is None:
            self._client = clickhouse_connect.get_client(
                dsn=self._url, connect_timeout=self._timeout, send_receive_timeout=self._timeout,
                autogenerate_session_id=False,
            )
        return self._client

    def _call(self, fn):
        with self._lock:
            try:
                return fn(self._get_client())
            except Exception as exc:
                self._client = None if "connect" in type(exc).__name__.lower() else self._client
                raise classify(exc) from exc

    def execute(self, sql: str, params: dict | None = None, fmt: str = "CSV") -> bytes:
        return self._call(lambda c: c.raw_query(sql, parameters=params, fmt=fmt))

    def insert(self, table: Table, rows: pa.Table, token: str) -> None:
        settings = {"insert_deduplication_token": check_token(token)}
        self._call(lambda c: c.insert_arrow(table.name, rows, database=self.database, settings=settings))

    def query(self, sql: str, fmt: str) -> bytes:
        # A client of its own per read: a long read must not hold the insert client's lock.
        import clickhouse_connect

        try:
            client = clickhouse_connect.get_client(dsn=self._url, database=self.database, connect_timeout=self._timeout,
                                                   send_receive_timeout=self._timeout, autogenerate_session_id=False)
            try:
                return client.raw_query(sql, fmt=fmt)
            finally:
                client.close()
        except Exception as exc:
            raise classify(exc) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
