"""Numbered schema migrations, derived from the column `since` numbers.

Each database records what it has applied in `schema_migrations`. At start the
store applies what is missing, in order, and refuses a database whose version
is newer than this code knows: running old code against a newer schema could
write rows the newer readers misinterpret.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemetry_gateway.schema.ddl import add_columns, create_table, create_view, ident
from telemetry_gateway.schema.model import TABLES, VIEWS


@dataclass(frozen=True)
class Migration:
    version: int
    statements: tuple[str, ...]


class SchemaTooNew(Exception):
    """The store was written by a newer gateway than this one."""

    def __init__(self, database: str, found: int, known: int) -> None:
        super().__init__(
            f"database {database!r} has schema version {found}, but this gateway knows versions up to {known}; "
            "upgrade the gateway (or point it at another database) instead of downgrading the store"
        )
        self.found = found
        self.known = known


def latest_version() -> int:
    return max([t.since for t in TABLES] + [c.since for t in TABLES for c in t.columns] + [v.since for v in VIEWS])


def migration(database: str, version: int) -> Migration:
    statements: list[str] = []
    for table in TABLES:
        if table.since == version:
            statements.append(create_table(database, table, version))
        elif table.since < version:
            statements.extend(add_columns(database, table, version))
    statements += [create_view(database, view) for view in VIEWS if view.since == version]
    return Migration(version, tuple(statements))


def bookkeeping_ddl(database: str) -> tuple[str, ...]:
    return (
        f"CREATE DATABASE IF NOT EXISTS {ident(database)}",
        f"CREATE TABLE IF NOT EXISTS {ident(database)}.`schema_migrations` "
        "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version",
    )


def pending(database: str, applied: int) -> list[Migration]:
    known = latest_version()
    if applied > known:
        raise SchemaTooNew(database, applied, known)
    return [migration(database, v) for v in range(applied + 1, known + 1)]
