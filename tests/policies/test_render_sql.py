"""`policy render-sql`: ClickHouse users, roles, row policies and grants equal to the policy's read scope.

Every statement is parsed by ClickHouse's own parser (chDB); with a server named by CLICKHOUSE_URL,
the statements are applied and a rendered user is shown to read only its tenant's rows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlparse

import pytest

from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.policies.load import parse_policy
from telemetry_gateway.policies.render_sql import render
from tests.gateway_process import ROOT
from tests.policies.test_policy import REGIONS, policy_text

DATABASES = {r: f"telemetry_{r}" for r in REGIONS}


def rendered():
    text, tokens = policy_text()
    loaded = parse_policy(text, REGIONS)
    return loaded.policy, render(loaded.policy, DATABASES), tokens


def test_every_statement_parses_with_clickhouses_parser(embedded_path):
    store = EmbeddedStore("default", "t_render", embedded_path)
    store.open()
    _, blocks, _ = rendered()
    statements = [s for block in blocks.values() for s in block]
    assert len(statements) > 50
    for statement in statements:
        store.execute(f"EXPLAIN AST {statement}")  # raises on a syntax error


def test_users_get_their_tenants_roles_only_where_their_tenants_may_live():
    policy, blocks, _ = rendered()
    eu, us, apac = (blocks[r] for r in REGIONS)
    analyst_hash = policy.principals["analyst"].tokens[0].sha256
    assert f"CREATE USER IF NOT EXISTS `tgw.analyst` IDENTIFIED WITH sha256_hash BY '{analyst_hash}'" in eu
    assert "GRANT `tgw.acme.read_raw` TO `tgw.analyst`" in eu
    assert not any("`tgw.analyst`" in s for s in us + apac)  # acme lives in eu only
    assert not any("acme-collector" in s for s in eu + us + apac)  # ingest only: no ClickHouse user
    assert "GRANT `tgw.*.admin` TO `tgw.ops`" in us and "GRANT SELECT ON `telemetry_us`.* TO `tgw.*.admin`" in us
    assert not any("`tgw.old`" in s for s in eu)  # an ingest principal, even with an expiry
    samples = [s for s in eu if "ROW POLICY" in s and "`telemetry_eu`.`samples`" in s]
    assert any("USING tenant = 'acme' TO `tgw.acme.read_raw`" in s for s in samples)
    assert any("USING 1 TO `tgw.*.admin`" in s for s in samples)
    validated = [s for s in eu if "`tgw.acme.validated.metric_points`" in s]
    assert validated and "empty(quality_flags)" in validated[0] and "`tgw.acme.read_validated`" in validated[0]



def test_readers_may_read_what_metric_points_reads_through():
    """metric_points is a Merge table: ClickHouse checks the grants and applies the row policies of each kind
    table it reads, and its label columns need SELECT on series_labels for joinGet."""
    _, blocks, _ = rendered()
    eu = blocks["eu"]
    for role in ("read_raw", "read_validated"):
        for table in ("samples", "histogram_points", "exp_histogram_points", "summary_points", "series_labels"):
            assert f"GRANT SELECT ON `telemetry_eu`.`{table}` TO `tgw.acme.{role}`" in eu
    for table in ("samples", "summary_points"):
        (validated,) = [s for s in eu if f"`tgw.acme.validated.{table}`" in s]
        assert "tenant = 'acme' AND empty(quality_flags) TO `tgw.acme.read_validated`" in validated
    assert not any("ROW POLICY" in s and "series_labels" in s for s in eu)


def test_an_expiring_token_becomes_valid_until():
    text, _ = policy_text(principals={"r": {"tenants": ["acme"], "roles": ["read_raw"],
                                            "tokens": [{"sha256": "a" * 64, "expires": "2027-03-01T12:00:00Z"}]}})
    blocks = render(parse_policy(text, REGIONS).policy, DATABASES)
    assert any("VALID UNTIL '2027-03-01 12:00:00'" in s for s in blocks["eu"])


def test_the_cli_prints_one_block_per_region(tmp_path):
    text, _ = policy_text()
    (tmp_path / "policy.yaml").write_text(text)
    (tmp_path / "gw.yaml").write_text("store:\n  regions: {eu: {database: telemetry_eu}, us: {database: telemetry_us}, "
                                      "apac: {database: telemetry_apac}}\n")
    out = subprocess.run([sys.executable, "-m", "telemetry_gateway.gateway.cli", "policy", "render-sql", "--config",
                          str(tmp_path / "gw.yaml"), str(tmp_path / "policy.yaml")],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert [line.split()[2] for line in out.splitlines() if line.startswith("-- region")] == REGIONS


@pytest.mark.server
def test_a_rendered_user_reads_only_its_tenants_rows_on_a_server():
    url = os.environ.get("CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_URL is not set: no ClickHouse server to test against")
    import clickhouse_connect

    from telemetry_gateway.gateway.store.server import ServerStore
    from telemetry_gateway.schema import POINTS
    from tests.store.test_scoped_reads import _set
    from tests.store.test_store import points

    database = f"t_{uuid.uuid4().hex[:12]}"
    store = ServerStore("eu", database, url)
    store.open()
    text, tokens = policy_text()
    policy = parse_policy(text, REGIONS).policy
    try:
        store.execute(f"INSERT INTO {database}.ingest_log (tenant, format) VALUES ('acme', 'x'), ('globex', 'y')")
        for tenant, token in (("acme", "a"), ("globex", "c")):
            store.insert_group(POINTS, _set(points([(1.0, [("k", tenant)])]), "tenant", tenant), token * 32)
        for statement in render(policy, {"eu": database})["eu"]:
            store.execute(statement)
        parsed = urlparse(url)
        reader = clickhouse_connect.get_client(host=parsed.hostname, port=parsed.port or 8123, username="tgw.analyst",
                                               password=tokens["analyst"])
        assert reader.query(f"SELECT tenant FROM {database}.ingest_log").result_rows == [("acme",)]
        # Through the Merge table, its kind tables' row policies and the labels' joinGet.
        assert reader.query(f"SELECT DISTINCT tenant, attributes['k'] FROM {database}.metric_points").result_rows \
            == [("acme", "acme")]
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {database}")
        for statement in ("DROP USER IF EXISTS `tgw.analyst`, `tgw.ops`",):
            store.execute(statement)
        store.close()
