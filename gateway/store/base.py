"""The store interface: one regional ClickHouse database.

Two backends share the DDL from `schema`: `EmbeddedStore` (chDB, the ClickHouse
engine in this process) and `ServerStore` (a ClickHouse server through
clickhouse-connect). Calls block; the writer runs them on a worker thread.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

import pyarrow as pa

from gateway.errors import QueryRefused, StoreRejected, StoreUnavailable
from schema import TABLES, Table
from schema.ddl import ident, set_retention
from schema.migrations import bookkeeping_ddl, pending

# ClickHouse error codes where retrying the same insert cannot help
# (after Vector's clickhouse sink, which gives up on 117 "incorrect data").
PERMANENT_CODES = frozenset({6, 16, 27, 36, 38, 41, 43, 44, 47, 53, 60, 62, 69, 70, 72, 81, 117, 130, 164, 386})
_CODE = re.compile(r"Code: (\d+)")
_TOKEN = re.compile(r"^[0-9a-f]{8,64}$")
_READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")


def classify(exc: Exception) -> Exception:
    """Translate a backend exception into StoreRejected or StoreUnavailable."""
    match = _CODE.search(str(exc))
    if match and int(match.group(1)) in PERMANENT_CODES:
        return StoreRejected(str(exc))
    return StoreUnavailable(str(exc))


def check_token(token: str) -> str:
    if not _TOKEN.match(token):
        raise ValueError(f"dedup token must be 8-64 lowercase hex digits, got {token!r}")
    return token


class RegionStore(ABC):
    def __init__(self, region: str, database: str, retention_days: int = 0) -> None:
        self.region = region
        self.database = database
        self.retention_days = retention_days

    # -- what a backend implements -------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: dict | None = None) -> bytes:
        """Run one statement; return its output as CSV bytes."""

    @abstractmethod
    def insert(self, table: Table, rows: pa.Table, token: str) -> None:
        """Insert rows once: a repeated token is deduplicated by the store."""

    @abstractmethod
    def query(self, sql: str, fmt: str) -> bytes:
        """Run a statement already passed through `guard_read`."""

    def close(self) -> None:
        pass

    # -- shared ---------------------------------------------------------------
    def open(self) -> None:
        """Create the database if needed and apply pending migrations."""
        for statement in bookkeeping_ddl(self.database):
            self.execute(statement)
        applied = self.schema_version()
        for migration in pending(self.database, applied):
            for statement in migration.statements:
                self.execute(statement)
            self.execute(f"INSERT INTO {ident(self.database)}.`schema_migrations` (version) VALUES ({migration.version})")
        if self.retention_days:
            for table in TABLES:
                self.execute(set_retention(self.database, table, self.retention_days))

    def schema_version(self) -> int:
        out = self.execute(f"SELECT max(version) FROM {ident(self.database)}.`schema_migrations`")
        return int(out.strip() or 0)

    def ping(self) -> None:
        self.execute("SELECT 1")

    def guard_read(self, sql: str) -> str:
        """One read-only statement, as ClickHouse itself parses it, run with readonly=1.

        ClickHouse's parser (formatQuerySingleLine) refuses several statements;
        the first keyword must be a read; readonly=1 then blocks writes, DDL and
        table functions such as file() and url(). INTO OUTFILE is refused here
        because readonly does not stop it.
        """
        try:
            out = self.execute("SELECT formatQuerySingleLine({q:String})", {"q": sql})
        except (StoreRejected, StoreUnavailable) as exc:
            raise QueryRefused(f"not one valid SQL statement: {str(exc).splitlines()[0]}") from None
        formatted = _csv_string(out)
        first = formatted.split(None, 1)[0].upper() if formatted else ""
        if first not in _READ_STATEMENTS:
            raise QueryRefused(f"only read statements ({', '.join(_READ_STATEMENTS)}) are allowed, got {first or 'nothing'}")
        if " INTO OUTFILE " in f" {formatted.upper()} ":
            raise QueryRefused("INTO OUTFILE is not allowed")
        return formatted + " SETTINGS readonly = 1"


def _csv_string(out: bytes) -> str:
    text = out.decode("utf-8").strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('""', '"')
    return text
