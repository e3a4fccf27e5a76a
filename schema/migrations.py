"""Numbered schema migrations, derived from the `since` and `retired` numbers of tables, columns and views.

Each database records what it has applied in `schema_migrations`. At start the
store applies what is missing, in order, and refuses a database whose version
is newer than this code knows: running old code against a newer schema could
write rows the newer readers misinterpret.

Migration N creates the tables and views with `since == N`, adds the columns
with `since == N` to older tables, changes the stored type of columns with
`retyped == N`, and moves the rows of a table with
`retired == N` into what replaces it (`schema.layout`), then drops it. A step
is a statement, or a function of the store's `execute` where it must look
before it acts: a move cut short by a crash runs again from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from telemetry_gateway.schema import layout
from telemetry_gateway.schema.otel import OTEL_VIEWS
from telemetry_gateway.schema.ddl import add_columns, create_table, create_view, ident, modify_columns
from telemetry_gateway.schema.model import TABLES, VIEWS

Execute = Callable[..., bytes]
Step = Union[str, Callable[[Execute], None]]

# Every table a store has held, retired ones included, in creation order.
STORED_TABLES = TABLES + layout.LAYOUT_TABLES
ALL_VIEWS = VIEWS + (layout.POINTS_VIEW,) + OTEL_VIEWS


def live_tables() -> tuple:
    """The tables a store at the latest version holds."""
    return tuple(t for t in STORED_TABLES if not t.retired)


@dataclass(frozen=True)
class Migration:
    version: int
    steps: tuple[Step, ...]

    @property
    def statements(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps if isinstance(s, str))


class SchemaTooNew(Exception):
    """The store was written by a newer gateway than this one."""

    def __init__(self, database: str, found: int, known: int) -> None:
        super().__init__(
            f"database {database!r} has schema version {found}, but this gateway knows versions up to {known}; "
            "upgrade the gateway (or point it at another database) instead of downgrading the store"
        )
        self.found = found
        self.known = known


class MoveFailed(Exception):
    """Rows moved to a new layout do not add up; the old table is kept."""


def latest_version() -> int:
    return max([t.since for t in STORED_TABLES] + [t.retired for t in STORED_TABLES]
               + [c.since for t in STORED_TABLES for c in t.columns]
               + [c.retyped for t in STORED_TABLES for c in t.columns] + [v.since for v in ALL_VIEWS])


def migration(database: str, version: int, labels_on_disk: bool = True) -> Migration:
    steps: list[Step] = []
    for table in STORED_TABLES:
        if table.since == version:
            steps.append(create_table(database, table, version))
        elif table.since < version and not (table.retired and table.retired <= version):
            steps.extend(add_columns(database, table, version))
            steps.extend(modify_columns(database, table, version))
    if version == layout.LAYOUT_VERSION:
        steps.append(layout.create_by_kind(database))
    for table in STORED_TABLES:
        if table.retired == version:
            steps.append(_mover(database, table.name))
    if version == layout.LABELS_VERSION:
        steps += layout.label_statements(database, labels_on_disk)
        steps.append(_points_to_table(database))
    steps += [create_view(database, view) for view in ALL_VIEWS if view.since == version]
    return Migration(version, tuple(steps))


def _mover(database: str, name: str) -> Callable[[Execute], None]:
    def move(execute: Execute) -> None:
        if _engine(execute, database, name) not in ("", "View"):
            execute(f"RENAME TABLE {ident(database)}.{ident(name)} TO {ident(database)}.{ident(layout.OLD_POINTS)}")
        if not _engine(execute, database, layout.OLD_POINTS):
            return  # moved and dropped before a crash cut the migration short
        for statement in layout.move_statements(database):
            execute(statement)
        before, after = (int(execute(sql).strip() or 0) for sql in layout.count_statements(database))
        if before != after:
            raise MoveFailed(f"moving {database}.{name} to the narrow layout copied {after} of {before} rows; "
                             f"the old rows stay in {database}.{layout.OLD_POINTS}")
        execute(f"DROP TABLE {ident(database)}.{ident(layout.OLD_POINTS)} SYNC")

    move.__name__ = f"move_{name}"
    return move


def _points_to_table(database: str) -> Callable[[Execute], None]:
    def replace_view(execute: Execute) -> None:
        db = ident(database)
        if _engine(execute, database, layout.POINTS_VIEW.name) == "View":
            execute(f"DROP VIEW {db}.{ident(layout.POINTS_VIEW.name)} SYNC")
        execute(f"DROP TABLE IF EXISTS {db}.{ident(layout.BY_KIND)} SYNC")
        execute(layout.create_points_table(database))

    return replace_view


def _engine(execute: Execute, database: str, table: str) -> str:
    out = execute("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                  {"db": database, "t": table}, "TSV")
    return out.decode().strip()


def bookkeeping_ddl(database: str) -> tuple[str, ...]:
    return (
        f"CREATE DATABASE IF NOT EXISTS {ident(database)}",
        f"CREATE TABLE IF NOT EXISTS {ident(database)}.`schema_migrations` "
        "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version",
    )


def pending(database: str, applied: int, target: int | None = None, labels_on_disk: bool = True) -> list[Migration]:
    """Migrations after `applied`, up to `target` (the latest when None)."""
    known = latest_version()
    if applied > known:
        raise SchemaTooNew(database, applied, known)
    return [migration(database, v, labels_on_disk) for v in range(applied + 1, (target or known) + 1)]
