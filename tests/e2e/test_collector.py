"""The real OpenTelemetry Collector (filelog → otlphttp) shipping a log file to the gateway."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import otel_collector
import pytest
import yaml

from tests.receivers.otlp_requests import unique

pytestmark = pytest.mark.integration

BINARY = Path(otel_collector.__file__).parent / "bin" / "otelcol-contrib_linux_amd64"
ACCESS_REGEX = (
    r'^(?P<client>\S+) \S+ \S+ \[(?P<ts>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) [^"]+" '
    r"(?P<status>\d{3}) (?P<bytes>\d+)"
)


def collector_config(log_file: Path, service: str, gateway) -> dict:
    return {
        "receivers": {"filelog": {
            "include": [str(log_file)],
            "start_at": "beginning",
            "resource": {"service.name": service},
            "operators": [{
                "type": "regex_parser",
                "regex": ACCESS_REGEX,
                "timestamp": {"parse_from": "attributes.ts", "layout": "%d/%b/%Y:%H:%M:%S %z"},
            }],
        }},
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"otlphttp": {"endpoint": gateway.http_url, "compression": "gzip"}},
        "service": {
            "pipelines": {"logs": {"receivers": ["filelog"], "processors": ["batch"], "exporters": ["otlphttp"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


def access_lines(base: datetime) -> list[str]:
    return [
        f'10.0.0.{i} - - [{(base + timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S +0000")}] '
        f'"GET /api/items/{i} HTTP/1.1" {200 if i % 3 else 503} {100 + i}'
        for i in range(1, 13)
    ]


def run_collector(tmp_path, lines: list[str], service: str, gateway) -> subprocess.Popen:
    log_file = tmp_path / "access.log"
    log_file.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(collector_config(log_file, service, gateway)))
    os.chmod(BINARY, 0o755)
    return subprocess.Popen([str(BINARY), "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_collector_filelog_to_otlphttp_lands_every_line(gateway, tmp_path):
    service = unique("collector")
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    lines = access_lines(base)
    collector = run_collector(tmp_path, lines, service, gateway)
    try:
        rows = gateway.wait_rows(
            "SELECT body, attributes['method'] AS method, attributes['path'] AS path, attributes['status'] AS status, "
            "attributes['log.file.name'] AS file, toString(toUnixTimestamp(time)) AS t, source_id "
            f"FROM telemetry.log_records WHERE service_name = '{service}' ORDER BY time",
            count=len(lines), timeout=60,
        )
    finally:
        collector.terminate()
        output = collector.communicate(timeout=30)[0].decode(errors="replace")
    assert len(rows) == len(lines), output[-3000:]
    assert [r["body"] for r in rows] == lines
    assert [r["path"] for r in rows] == [f"/api/items/{i}" for i in range(1, 13)]
    assert [r["status"] for r in rows] == ["200" if i % 3 else "503" for i in range(1, 13)]
    assert {r["method"] for r in rows} == {"GET"} and {r["file"] for r in rows} == {"access.log"}
    assert [int(r["t"]) for r in rows] == [int((base + timedelta(seconds=i)).timestamp()) for i in range(1, 13)]
    assert {r["source_id"] for r in rows} == {"otlp-http:127.0.0.1"}


def test_an_access_log_tailed_by_the_collector_becomes_request_series(start_gateway, tmp_path):
    gw = start_gateway({"log_metrics": [{"name": "http.server.requests", "preset": "nginx_access"}]})
    service = unique("access")
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    collector = run_collector(tmp_path, access_lines(base), service, gw)
    query = ("SELECT metric_name, attributes['status_class'] AS cls, sum(value) AS v FROM telemetry.metric_points "
             f"WHERE service_name = '{service}' AND source_kind = 'log' GROUP BY metric_name, cls ORDER BY metric_name, cls")
    try:
        deadline = time.monotonic() + 60
        rows = gw.rows(query)
        while sum(r["v"] for r in rows if r["metric_name"] == "http.server.requests") < 12 and time.monotonic() < deadline:
            time.sleep(0.3)
            rows = gw.rows(query)
    finally:
        collector.terminate()
        collector.communicate(timeout=30)
    assert rows == [
        {"metric_name": "http.server.requests", "cls": "2xx", "v": 8},
        {"metric_name": "http.server.requests", "cls": "5xx", "v": 4},
        {"metric_name": "http.server.requests.bytes", "cls": "2xx", "v": sum(100 + i for i in range(1, 13) if i % 3)},
        {"metric_name": "http.server.requests.bytes", "cls": "5xx", "v": sum(100 + i for i in range(1, 13) if not i % 3)},
    ]


def readme_collector_snippet() -> dict:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    block = text.split("<!-- collector-snippet -->", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


@pytest.mark.parametrize("source", ["README.md", "deploy/otelcol.example.yaml"])
def test_the_documented_collector_configs_run_on_the_bundled_collector(source, tmp_path):
    root = Path(__file__).parents[2]
    config = readme_collector_snippet() if source == "README.md" else yaml.safe_load((root / source).read_text())
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    os.chmod(BINARY, 0o755)
    result = subprocess.run([str(BINARY), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # And what validate cannot see: a component the bundled build lacks is refused by name.
    config["receivers"]["hostmetrics"] = {"scrapers": {"cpu": {}}}
    config["service"]["pipelines"]["metrics"] = {"receivers": ["hostmetrics"], "exporters": ["otlphttp"]}
    path.write_text(yaml.safe_dump(config))
    refused = subprocess.run([str(BINARY), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "hostmetrics" in refused.stderr
