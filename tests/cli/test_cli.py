"""The CLI: sql through a running gateway and on a store no process holds; clean shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from telemetry_gateway.schema.migrations import latest_version
from tests.gateway_process import ROOT
from tests.receivers.otlp_requests import gauge_request, post

pytestmark = pytest.mark.integration


def sql(gateway, statement: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "telemetry_gateway.gateway.cli", "sql", "--config", str(gateway.config_path), *extra, statement],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )


def send(gateway, service: str, values: list[float]) -> tuple[int, bytes]:
    code, _, body = post(gateway.http_url, "/v1/metrics", gauge_request(service, [{"value": v} for v in values]).SerializeToString(),
                         {"Content-Type": "application/x-protobuf"})
    return code, body


def test_sql_goes_through_the_running_gateway(start_gateway):
    gw = start_gateway()
    assert send(gw, "cli_svc", [1.0, 2.0])[0] == 200
    # The answer means spooled; the writer stores a moment later.
    assert len(gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'cli_svc'", 2)) == 2
    result = sql(gw, "SELECT value FROM telemetry.metric_points WHERE service_name = 'cli_svc' ORDER BY value", "--format", "CSV")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n"


def test_sql_refuses_writes_with_a_clear_message(start_gateway):
    gw = start_gateway()
    result = sql(gw, "DROP DATABASE telemetry")
    assert result.returncode == 1
    assert "only read statements (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) are allowed, got DropQuery" in result.stderr


def test_the_sql_api_needs_the_admin_token(start_gateway):
    gw = start_gateway()
    with pytest.raises(urllib.error.HTTPError) as info:
        gw.query_raw("SELECT 1", token="wrong")
    assert info.value.code == 401
    token_file = gw.workdir / "data" / "admin.token"
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_sigterm_stores_what_was_accepted_then_sql_reads_the_store_directly(start_gateway):
    # A long batch delay: the request below is only answered when shutdown flushes it.
    gw = start_gateway({"store": {"batch": {"max_delay": "10m"}}})
    answer: dict = {}
    sender = threading.Thread(target=lambda: answer.update(result=send(gw, "drain_svc", [5.0, 6.0, 7.0])))
    sender.start()
    deadline_rows = 0
    for _ in range(100):
        if 'gateway_queue_rows{region="default",table="metric_points"} 3.0' in gw.metrics_text():
            deadline_rows = 3
            break
        threading.Event().wait(0.05)
    assert deadline_rows == 3, "the request never reached the writer"
    assert gw.stop() == 0
    sender.join(30)
    code, body = answer["result"]
    assert code == 200 and not ExportMetricsServiceResponse.FromString(body).HasField("partial_success")
    # No process holds the store now: the CLI opens it itself.
    result = sql(gw, "SELECT value FROM telemetry.metric_points WHERE service_name = 'drain_svc' ORDER BY value", "--format", "JSONEachRow")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["value"] for line in result.stdout.splitlines()] == [5, 6, 7]
    assert not (gw.workdir / "data" / "admin.token").exists()


def test_a_second_gateway_on_the_same_store_is_refused(start_gateway, tmp_path):
    gw = start_gateway()
    result = subprocess.run(
        [sys.executable, "-m", "telemetry_gateway.gateway.cli", "serve", "--config", str(gw.config_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 1
    assert "is in use by another process" in result.stderr
    # The refused one left the running gateway's admin details alone: the CLI still reaches it.
    assert sql(gw, "SELECT 7", "--format", "CSV").stdout == "7\n"


def test_serve_refuses_a_store_written_by_a_newer_gateway(tmp_path):
    data = tmp_path / "data"
    bump = (
        "import sys; from pathlib import Path; from gateway.store.embedded import EmbeddedStore\n"
        "s = EmbeddedStore('default', 'telemetry', Path(sys.argv[1])); s.open()\n"
        "s.execute('INSERT INTO telemetry.schema_migrations (version) VALUES (999)'); s.close()\n"
    )
    subprocess.run([sys.executable, "-c", bump, str(data)], check=True, cwd=ROOT, timeout=120)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"store: {{path: {data}}}\nreceivers: {{otlp: {{grpc: {{enabled: false}}, http: {{enabled: false}}}}}}\n"
                      "admin: {endpoint: 127.0.0.1:1}\n")
    result = subprocess.run([sys.executable, "-m", "telemetry_gateway.gateway.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert f"database 'telemetry' has schema version 999, but this gateway knows versions up to {latest_version()}" in result.stderr


def test_data_and_spool_files_are_private(start_gateway):
    gw = start_gateway({"spool": {"fsync": "batch"}})
    data = gw.workdir / "data"
    data.chmod(0o755)  # made wider by hand: the next start narrows it again
    assert gw.stop() == 0
    gw.start()
    assert send(gw, "private_svc", [1.0])[0] == 200
    assert gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'private_svc'", 1)
    assert data.stat().st_mode & 0o777 == 0o700
    shared = [str(p) for p in data.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert shared == []
    assert any(data.glob("spool/segment-*.spool"))


def test_sql_learns_regions_from_the_running_gateway_and_reads_in_the_region_database(start_gateway):
    gw = start_gateway({"store": {"regions": {"eu": {"database": "telemetry_eu"}, "us": {"database": "telemetry_us"}}}})

    def bare_sql(*args: str) -> subprocess.CompletedProcess:
        # No --config: a newcomer in the directory holding ./data.
        return subprocess.run([sys.executable, "-m", "telemetry_gateway.gateway.cli", "sql", *args],
                              capture_output=True, text=True, cwd=gw.workdir, timeout=120)

    tables = bare_sql("--region", "eu", "--format", "CSV", "SHOW TABLES")
    assert tables.returncode == 0, tables.stderr
    assert {"metric_points", "log_records", "ingest_log"} <= set(tables.stdout.replace('"', "").split())
    unqualified = bare_sql("--region", "us", "--format", "CSV", "SELECT currentDatabase(), count() FROM metric_points")
    assert unqualified.stdout == '"telemetry_us",0\n', unqualified.stderr
    unnamed = bare_sql("SELECT 1")
    assert unnamed.returncode == 1 and "no region named 'default' (configured: eu, us)" in unnamed.stderr


def test_sql_through_a_running_gateway_loads_neither_the_pipeline_nor_the_engine(start_gateway):
    gw = start_gateway()
    heavy = ("pyarrow", "pydantic", "chdb", "numpy", "pandas", "grpc", "aiohttp", "telemetry_gateway.gateway.pipeline")
    probe = (
        "import sys\n"
        "from telemetry_gateway.gateway.cli import main\n"
        f"try:\n    main(['sql', '--config', {str(gw.config_path)!r}, '--format', 'CSV', 'SELECT 41 + 1'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    assert result.stderr.strip() == "[]"


@pytest.mark.parametrize("asked", ["", "system"])
def test_serve_takes_arrow_memory_from_jemalloc_unless_told_otherwise(asked):
    """In a fresh process, as `serve` starts: the pool Arrow's batches come from."""
    import pyarrow as pa

    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow has no jemalloc")
    code = ("from telemetry_gateway.gateway.cli import _arrow_pool; _arrow_pool(); "
            "import pyarrow as pa; print(pa.default_memory_pool().backend_name)")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if asked:
        env["ARROW_DEFAULT_MEMORY_POOL"] = asked
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout
    assert out.strip() == (asked or "jemalloc")


_MMAPPED_BLOCKS = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
if sys.argv[1] == "serve":
    from telemetry_gateway.gateway.cli import _keep_freed_memory
    assert _keep_freed_memory()
before = libc.mallinfo2().hblks
block = libc.malloc(16 << 20)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.parametrize(("setup", "mapped"), [("serve", 0), ("plain", 1)])
def test_serve_keeps_large_blocks_in_the_heap_rather_than_mapping_each(setup, mapped):
    """A 16 MiB block: glibc maps it on its own by default, and from the heap after `serve`'s
    set-up (mallinfo2 counts the mapped blocks). Both run in a fresh process."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the settings are glibc's")
    out = subprocess.run([sys.executable, "-c", _MMAPPED_BLOCKS, setup], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip() == str(mapped)
