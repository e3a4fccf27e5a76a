"""A store written by the release of schema version 6 (the wide `metric_points` table) is moved to the
narrow layout when it opens, and `metric_points` gives the same rows. The store and its rows were
recorded with that release (`testdata/make_v6_store.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from telemetry_gateway.schema.layout import KIND_TABLES, OLD_POINTS
from telemetry_gateway.schema.migrations import latest_version

pytestmark = pytest.mark.integration

TESTDATA = Path(__file__).parent / "testdata"
EVERY_ROW = "SELECT * FROM metric_points ORDER BY series_id, time, kind"


def old_store(tmp_path: Path) -> Path:
    with tarfile.open(TESTDATA / "v6_store.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def sql(cwd: Path, statement: str) -> list[dict]:
    """`telemetry-gateway sql` on ./data, as a user would run it: the store is opened, and migrated, there."""
    result = subprocess.run([sys.executable, "-m", "telemetry_gateway.gateway.cli", "sql", "--format", "JSONEachRow",
                             statement], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def in_store(cwd: Path, code: str) -> None:
    """Run Python against the store at ./data with the current release (chDB: one data directory per process)."""
    script = ("from pathlib import Path\nfrom telemetry_gateway.gateway.store.embedded import EmbeddedStore\n"
              "store = EmbeddedStore('default', 'telemetry', Path('data'))\n" + code + "\nstore.close()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr


def recorded_rows() -> list[dict]:
    return [json.loads(line) for line in (TESTDATA / "v6_rows.jsonl").read_text().splitlines()]


def test_the_old_rows_come_back_the_same_from_the_view(tmp_path):
    cwd = old_store(tmp_path)
    rows = sql(cwd, EVERY_ROW)
    expected = recorded_rows()
    assert len(rows) == len(expected) == 21
    assert rows == expected
    tables = {r["name"] for r in sql(cwd, "SHOW TABLES")}
    assert OLD_POINTS not in tables and {k.table.name for k in KIND_TABLES} <= tables
    assert sql(cwd, "SELECT max(version) AS v FROM schema_migrations") == [{"v": latest_version()}]
    kinds = {r["kind"]: int(r["n"]) for r in sql(cwd, "SELECT kind, count() AS n FROM samples GROUP BY kind")}
    assert kinds == {"gauge": sum(r["kind"] == "gauge" for r in expected), "sum": sum(r["kind"] == "sum" for r in expected)}


def test_a_move_cut_short_runs_again_from_the_start(tmp_path):
    cwd = old_store(tmp_path)
    # As a crash would leave it: the wide table renamed, the layout half written with a wrong row.
    in_store(cwd, "from telemetry_gateway.schema.migrations import migration\n"
                  "for step in migration('telemetry', 7).steps:\n"
                  "    if isinstance(step, str) and 'CREATE TABLE' in step: store.execute(step)\n"
                  "store.execute('RENAME TABLE telemetry.metric_points TO telemetry.metric_points_v6')\n"
                  "store.execute(\"INSERT INTO telemetry.samples (metric_name, value) VALUES ('stray', 1)\")")
    assert sql(cwd, EVERY_ROW) == recorded_rows()


def test_a_store_at_version_6_with_no_rows_moves_too(tmp_path):
    in_store(tmp_path, "store.migrate(6)")
    assert sql(tmp_path, EVERY_ROW) == []
    assert sql(tmp_path, "SELECT engine FROM system.tables WHERE database = 'telemetry' AND name = 'metric_points'") \
        == [{"engine": "Merge"}]


NEW_SERIES = """
import time
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import POINTS
store.open()
rows = PointRows(AttributeSets())
rows.add(name='fresh', kind='gauge', time_ns=time.time_ns(), value=1.0, attributes={'host': 'new'},
         resource={'service.name': 'svc'})
made = Provenance('otlp_metrics', 'otlp', 'default', Caller('local'), 'b' * 32, time.time_ns(), region='default')
store.insert_group(POINTS, Finalizer(AcceptWindow()).finish(rows.finish(), made, Outcome()), 'f' * 32)
"""


def test_labels_are_there_after_a_restart(tmp_path):
    """`series_labels` lives in memory: each process loads it from disk, both what the migration filled in
    and what the feed added since."""
    cwd = old_store(tmp_path)
    sql(cwd, "SELECT 1")  # the first process migrates: the fill
    in_store(cwd, NEW_SERIES)  # the second writes a new series: the feed
    shown = sql(cwd, "SELECT metric_name, attributes, resource_attributes['service.name'] AS service "
                     "FROM metric_points WHERE metric_name IN ('orders', 'fresh') ORDER BY metric_name, time")
    assert shown == [{"metric_name": "fresh", "attributes": {"host": "new"}, "service": "svc"}] + [
        {"metric_name": "orders", "attributes": {"country": "fr"}, "service": "checkout"}] * 2


def test_the_embedded_store_keeps_no_labels_file_a_crash_could_tear(tmp_path):
    """A persistent Join table appends a file per insert, and the engine refuses to start on a torn one
    (measured: "Cannot attach table ... Cannot read all data"), so a crash during a series insert would
    leave a store that cannot open. The embedded store keeps `series_labels` in memory only, filled at
    start (`test_labels_are_there_after_a_restart`): after the migration's fill and the feed, no file."""
    cwd = old_store(tmp_path)
    sql(cwd, "SELECT 1")
    in_store(cwd, NEW_SERIES)
    (where,) = sql(cwd, "SELECT data_paths[1] AS path FROM system.tables WHERE name = 'series_labels'")
    table_dir = cwd / "data" / "chdb" / where["path"]
    assert table_dir.is_dir() and not [p for p in table_dir.rglob("*") if p.is_file()]
