"""The embedded store: chDB, the ClickHouse engine inside this process.

chDB allows one data directory per process and one process per directory, so
every embedded region is a database inside the same directory, and all calls
go through one session guarded by a lock. A lock file held with flock tells a
second gateway (or `telemetry-gateway sql`) that the directory is in use,
with a clearer message than the engine's own.
"""

from __future__ import annotations

import fcntl
import queue
import threading
from pathlib import Path

import pyarrow as pa

from telemetry_gateway.gateway.running import LOCK_NAME
from telemetry_gateway.gateway.store.base import RegionStore, check_token, classify
from telemetry_gateway.schema import Table
from telemetry_gateway.schema.ddl import ident



# chDB's Python() reader pays per chunk and column: measured on 480k narrow rows, 5.5 CPU-us per row
# in 100-row chunks, 1.4 in 2000-row chunks, where joining the chunks first cost 1.1 and 0.2.
# A writer's group is one chunk per batch, and SDKs, scrapes and syslog flushes send small ones.
MIN_AVERAGE_CHUNK = 2000


def few_chunks(rows: pa.Table) -> pa.Table:
    """`rows` with its chunks joined when they are small on average."""
    chunks = max((c.num_chunks for c in rows.columns), default=1)
    if chunks > 1 and rows.num_rows < MIN_AVERAGE_CHUNK * chunks:
        return rows.combine_chunks()
    return rows


class DataDirInUse(RuntimeError):
    pass


def _session(path: Path):
    from chdb import session as chdb_session  # imported late: ~0.3 s, and only embedded mode needs it

    session = chdb_session.Session(str(path / "chdb"))
    # metric_points' labels and batch_id are ALIAS columns: SELECT * shows them, as the wide table did.
    session.query("SET asterisk_include_alias_columns = 1")
    return session


class EmbeddedEngine:
    """The one chDB session of this process, over one data directory."""

    _instance: EmbeddedEngine | None = None

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / LOCK_NAME, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirInUse(f"data directory {self.path} is in use by another process") from None
        self._session = _session(self.path)
        self.lock = threading.Lock()
        # Reads get sessions of their own on the same directory: a long read
        # then never holds up inserts, readiness or shutdown.
        self._readers: queue.SimpleQueue = queue.SimpleQueue()
        self._all_readers: list = []

    @classmethod
    def open(cls, path: Path) -> EmbeddedEngine:
        if cls._instance is None:
            cls._instance = cls(path)
        elif cls._instance.path != path.resolve():
            raise DataDirInUse(
                f"this process already holds the embedded store at {cls._instance.path}; "
                f"chDB cannot open a second one ({path})"
            )
        return cls._instance

    def run(self, sql: str, fmt: str = "CSV", params: dict | None = None, rows: pa.Table | None = None) -> bytes:
        """Run one statement; `rows` is what `Python(rows)` in the SQL reads."""
        with self.lock:
            try:
                # chDB resolves Python(rows) from the local variables of this frame.
                result = self._session.query(sql, fmt, params=params or {})
            except Exception as exc:  # chDB raises bare ChdbError / RuntimeError
                raise classify(exc) from exc
        return result.bytes() if result is not None else b""

    def read(self, sql: str, fmt: str, database: str = "default") -> bytes:
        """Run a read on a reader session (one per concurrent read, kept for reuse), in `database`
        as `clickhouse-client --database` would: unqualified names and SHOW TABLES mean the region's."""
        try:
            session = self._readers.get_nowait()
        except queue.Empty:
            with self.lock:
                session = _session(self.path)
                self._all_readers.append(session)
        try:
            session.query(f"USE {ident(database)}")
            result = session.query(sql, fmt)
        except Exception as exc:  # chDB raises bare ChdbError / RuntimeError
            raise classify(exc) from exc
        finally:
            self._readers.put(session)
        return result.bytes() if result is not None else b""

    @classmethod
    def close_instance(cls) -> None:
        engine, cls._instance = cls._instance, None
        if engine is not None:
            with engine.lock:
                for reader in engine._all_readers:
                    reader.close()
                engine._session.close()
                fcntl.flock(engine._lock_file, fcntl.LOCK_UN)
                engine._lock_file.close()


class EmbeddedStore(RegionStore):
    LABELS_ON_DISK = False  # see schema.layout.create_series_labels

    def __init__(self, region: str, database: str, path: Path, retention_days: int = 0) -> None:
        super().__init__(region, database, retention_days)
        self.path = path
        self.engine = EmbeddedEngine.open(path)

    def execute(self, sql: str, params: dict | None = None, fmt: str = "CSV") -> bytes:
        return self.engine.run(sql, fmt, params)

    def insert(self, table: Table, rows: pa.Table, token: str) -> None:
        rows = few_chunks(rows)
        names = ", ".join(ident(c.name) for c in table.sent_columns())
        sql = (
            f"INSERT INTO {ident(self.database)}.{ident(table.name)} ({names}) "
            f"SETTINGS insert_deduplication_token = '{check_token(token)}' "
            f"SELECT {names} FROM Python(rows)"
        )
        self.engine.run(sql, rows=rows)

    def query(self, sql: str, fmt: str) -> bytes:
        return self.engine.read(sql, fmt, self.database)

    def close(self) -> None:
        EmbeddedEngine.close_instance()

