"""The store interface: one regional ClickHouse database.

Two backends share the DDL from `schema`: `EmbeddedStore` (chDB, the ClickHouse
engine in this process) and `ServerStore` (a ClickHouse server through
clickhouse-connect). Calls block; the writer runs them on a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from abc import ABC, abstractmethod

import pyarrow as pa

from telemetry_gateway.gateway.errors import (GatewayError, PartlyStored, QueryFailed, QueryRefused, StoreRejected,
                                              StoreUnavailable)
from telemetry_gateway.gateway.store.reads import ReadLimits, ReadScope, check_read, check_scope, kill_statement, read_settings
from telemetry_gateway.gateway.store.series import SeriesCatalog, prime_query
from telemetry_gateway.schema import POINTS, SERIES, Table
from telemetry_gateway.schema.ddl import ident, set_retention
from telemetry_gateway.schema.layout import SERIES_LABELS, fill_labels, forget_statements, split_points
from telemetry_gateway.schema.migrations import bookkeeping_ddl, live_tables, pending

# ClickHouse error codes where retrying the same insert cannot help
# (after Vector's clickhouse sink, which gives up on 117 "incorrect data").
PERMANENT_CODES = frozenset({6, 16, 27, 36, 38, 41, 43, 44, 47, 53, 60, 62, 69, 70, 72, 81, 117, 130, 164, 386})
_CODE = re.compile(r"Code: (\d+)")
_TTL_DAYS = re.compile(r"\bTTL .*?toIntervalDay\((\d+)\)")
_TOKEN = re.compile(r"^[0-9a-f]{8,64}$")


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


log = logging.getLogger(__name__)

# With a retention, how often the points' writer forgets the series whose points have all expired.
FORGET_EVERY_S = 6 * 3600


class RegionStore(ABC):
    # Whether the engine keeps `series_labels` on disk itself; if not, `open` fills it from `series`.
    LABELS_ON_DISK = True

    def __init__(self, region: str, database: str, retention_days: int = 0) -> None:
        self.region = region
        self.database = database
        self.retention_days = retention_days
        self._output_formats: frozenset[str] = frozenset()
        self.series = SeriesCatalog()
        self._next_forget = 0.0

    # -- what a backend implements -------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: dict | None = None, fmt: str = "CSV") -> bytes:
        """Run one statement; return its output (CSV unless asked)."""

    @abstractmethod
    def insert(self, table: Table, rows: pa.Table, token: str) -> None:
        """Insert rows once: a repeated token is deduplicated by the store."""

    @abstractmethod
    def query(self, sql: str, fmt: str) -> bytes:
        """Run a read (from `read`), apart from inserts where the backend allows."""

    def close(self) -> None:
        pass

    # -- shared ---------------------------------------------------------------
    def open(self) -> None:
        """Create the database if needed and apply pending migrations."""
        self.migrate()
        self._converge_retention()
        # Asked once here, off the event loop: reads are checked against it on every request.
        out = self.execute("SELECT name FROM system.formats WHERE is_output", fmt="TSV")
        self._output_formats = frozenset(out.decode().split())
        self._prime_series()
        if not self.LABELS_ON_DISK:
            self._fill_labels()

    def migrate(self, target: int | None = None) -> None:
        """Apply the migrations this database lacks, up to `target` (the latest when None)."""
        for statement in bookkeeping_ddl(self.database):
            self.execute(statement)
        for migration in pending(self.database, self.schema_version(), target, self.LABELS_ON_DISK):
            for step in migration.steps:
                if isinstance(step, str):
                    self.execute(step)
                else:
                    step(self.execute)
            self.execute(f"INSERT INTO {ident(self.database)}.`schema_migrations` (version) VALUES ({migration.version})")

    def _fill_labels(self) -> None:
        # Empty after a start; not after the migration that created it, which filled it already.
        held = self.execute(f"SELECT count() FROM {ident(self.database)}.{ident(SERIES_LABELS)}", fmt="TSV")
        if int(held.strip() or 0) == 0:
            self.execute(fill_labels(self.database))

    def _prime_series(self) -> None:
        out = self.execute(prime_query(self.database), fmt="JSONCompactEachRow")
        self.series.prime([json.loads(line) for line in out.decode().splitlines() if line])

    def insert_group(self, table: Table, rows: pa.Table, token: str, skip: frozenset[str] = frozenset()) -> None:
        """Insert a writer's group. Points go to the layout of `schema.layout`, their new series
        described first, so a reader never sees a point without its labels. Tables in `skip`
        already hold the group's share (`PartlyStored`)."""
        if table is not POINTS:
            self.insert(table, rows, token)
            return
        self._forget_expired_if_due()
        try:
            changes = self.series.changes(rows)
            parts = split_points(rows)
        except (KeyError, ValueError, pa.ArrowException) as exc:
            raise StoreRejected(f"points not in the shape of {POINTS.name}: {exc}") from exc
        stored = set(skip)
        if changes is not None and SERIES.name not in skip:
            series_rows, fresh = changes
            self._insert_share(SERIES, series_rows, token, stored)
            self.series.remember(fresh)
        for kind_table, part in parts:
            if kind_table.name not in skip:
                self._insert_share(kind_table, part, token, stored)

    def _forget_expired_if_due(self) -> None:
        # Here, in the points' writer, so no group of points is being stored meanwhile: a series that
        # came back is then either still counted live or forgotten by the catalog too, and written again.
        if not self.retention_days or time.monotonic() < self._next_forget:
            return
        self._next_forget = time.monotonic() + FORGET_EVERY_S
        try:
            forgotten = self.forget_expired_series()
        except GatewayError as exc:
            log.warning("%s: could not forget expired series (next try in %ds): %s", self.database, FORGET_EVERY_S, exc)
            return
        if forgotten:
            log.info("%s: forgot %d series whose points have all expired", self.database, forgotten)

    def forget_expired_series(self) -> int:
        """Remove the series that have no point left from `series` and `series_labels` (which holds every
        series' labels in memory), and from the catalog, so one that comes back is described again."""
        find, *deletes = forget_statements(self.database)
        ids = [int(line) for line in self.execute(find, fmt="TSV").decode().split()]
        if ids:
            for statement in deletes:
                self.execute(statement)
            self.series.forget(ids)
        return len(ids)

    def _insert_share(self, table: Table, rows: pa.Table, token: str, stored: set[str]) -> None:
        try:
            self.insert(table, rows, part_token(token, table))
        except StoreRejected as exc:
            if stored:
                raise PartlyStored(str(exc), frozenset(stored)) from exc
            raise
        stored.add(table.name)

    def output_formats(self) -> frozenset[str]:
        """Every output format the engine knows (system.formats), as of `open`."""
        return self._output_formats

    def _converge_retention(self) -> None:
        """Make each table's TTL what the config says now, including none.

        Only a table whose TTL differs is altered: a TTL change rewrites parts."""
        for table in live_tables():
            if not table.ttl_column:
                continue
            current = self._ttl_days(table)
            if current != self.retention_days:
                self.execute(set_retention(self.database, table, self.retention_days))

    def _ttl_days(self, table: Table) -> int:
        out = self.execute("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                           {"db": self.database, "t": table.name})
        match = _TTL_DAYS.search(_csv_string(out))
        return int(match.group(1)) if match else 0

    def schema_version(self) -> int:
        out = self.execute(f"SELECT max(version) FROM {ident(self.database)}.`schema_migrations`")
        return int(out.strip() or 0)

    def ping(self) -> None:
        self.execute("SELECT 1")

    def guard_read(self, sql: str, scope: ReadScope | None = None) -> str:
        """The statement as ClickHouse formats it, once `reads.check_read` (and, for a scoped
        reader, `reads.check_scope`) accepts its parse tree."""
        try:
            formatted = _csv_string(self.execute("SELECT formatQuerySingleLine({q:String})", {"q": sql}))
            ast = self.execute(f"EXPLAIN AST {formatted}", fmt="TSVRaw")
        except (StoreRejected, StoreUnavailable) as exc:
            raise QueryRefused(f"not one valid SQL statement: {_first_line(exc)}") from None
        check_read(ast.decode("utf-8", "replace"))
        if scope is not None:
            check_scope(ast.decode("utf-8", "replace"), scope, self.database)
        return formatted

    def read(self, sql: str, fmt: str, limits: ReadLimits, marker: str, scope: ReadScope | None = None) -> bytes:
        """Run a statement already passed through `guard_read`, bounded by `limits` (and `scope`)."""
        filters = scope.filters(self.database) if scope is not None else ""
        try:
            return self.query(sql + read_settings(limits, marker, filters), fmt)
        except (StoreRejected, StoreUnavailable) as exc:
            if isinstance(exc, StoreUnavailable) and not _CODE.search(str(exc)):
                raise  # the store did not answer: retryable
            # The store ran the query and stopped it: its limits, its syntax, its tables.
            raise QueryFailed(f"the query failed: {_first_line(exc)}") from None

    def cancel(self, marker: str) -> None:
        """Stop the read running under `marker`, if it still runs."""
        self.execute(kill_statement(marker))


def part_token(token: str, table: Table) -> str:
    """The dedup token of one table's share of a group, derived from the group's own."""
    return hashlib.sha256(f"{token}:{table.name}".encode()).hexdigest()[:32]


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _csv_string(out: bytes) -> str:
    text = out.decode("utf-8").strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('""', '"')
    return text
