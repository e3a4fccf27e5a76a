"""A store written by the release of schema version 6 (the wide `metric_points` table) is moved to the
narrow layout when it opens, and `metric_points` gives the same rows. So does a store written by the
release of version 10 (metadata on every point), whose points get their `meta` and whose series a row
per metadata version. The stores and their rows were recorded with those releases
(`testdata/make_v6_store.py`, `testdata/make_v10_store.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from telemetry_gateway.schema.layout import KIND_TABLES, META_COLUMNS, OLD_POINTS
from telemetry_gateway.schema.migrations import latest_version

pytestmark = pytest.mark.integration

TESTDATA = Path(__file__).parent / "testdata"
EVERY_ROW = "SELECT * FROM metric_points ORDER BY series_id, time, kind"


def old_store(tmp_path: Path, version: int = 6) -> Path:
    with tarfile.open(TESTDATA / f"v{version}_store.tar.gz") as tar:
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


def recorded_rows(version: int = 6) -> list[dict]:
    return [json.loads(line) for line in (TESTDATA / f"v{version}_rows.jsonl").read_text().splitlines()]


def test_the_old_rows_come_back_the_same_from_the_view(tmp_path):
    cwd = old_store(tmp_path)
    rows = sql(cwd, EVERY_ROW)
    expected = recorded_rows()
    assert len(rows) == len(expected) == 21
    assert rows == expected
    tables = {r["name"] for r in sql(cwd, "SHOW TABLES")}
    assert OLD_POINTS not in tables and {k.table.name for k in KIND_TABLES} <= tables
    assert sql(cwd, "SELECT max(version) AS v FROM schema_migrations") == [{"v": latest_version()}]
    scalar = sum(r["kind"] in ("gauge", "sum") for r in expected)
    assert sql(cwd, "SELECT toString(count()) AS n FROM samples") == [{"n": str(scalar)}]


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
        == [{"engine": "View"}]


def test_a_version_10_store_keeps_every_point_s_metadata_in_series_versions(tmp_path):
    cwd = old_store(tmp_path, 10)
    expected = recorded_rows(10)
    assert len(expected) == 27 and {"", "described later"} <= {r["description"] for r in expected}
    assert sql(cwd, EVERY_ROW) == expected
    assert sql(cwd, "SELECT max(version) AS v FROM schema_migrations") == [{"v": latest_version()}]
    columns = {r["name"] for r in sql(cwd, "SELECT name FROM system.columns WHERE table = 'samples'")}
    assert "meta" in columns and not columns & set(META_COLUMNS)
    # A version row for each metadata its points had, and none left over from before (meta 0).
    versions = sql(cwd, "SELECT toString(series_id) AS id, description AS d FROM series FINAL ORDER BY id, d")
    assert versions == [{"id": i, "d": d} for i, d in sorted({(str(r["series_id"]), r["description"]) for r in expected})]
    assert sql(cwd, "SELECT count() AS n FROM series WHERE meta = 0") == [{"n": 0}]


def test_a_version_11_migration_cut_short_runs_again(tmp_path):
    cwd = old_store(tmp_path, 10)
    # As a crash would leave it: points keyed and version rows written, the old rows and columns still there.
    in_store(cwd, "from telemetry_gateway.schema.migrations import migration\n"
                  "for step in migration('telemetry', 11).steps:\n"
                  "    if 'DELETE WHERE' in step: break\n"
                  "    store.execute(step)")
    assert sql(cwd, EVERY_ROW) == recorded_rows(10)
