from __future__ import annotations

import json

import pyarrow as pa

from telemetry_gateway.adapters.jsonlines import jsonlines_to_arrow
from telemetry_gateway.adapters.log_metrics import LogMetricRule, derive
from telemetry_gateway.adapters.logrows import severity_name
from telemetry_gateway.adapters.syslog import syslog_to_arrow
from telemetry_gateway.adapters.attributes import AttributeSets
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import plain_rows

NOW = 1_800_000_000 * NS


def test_json_lines_fields_and_refusals():
    body = b"\n".join([
        json.dumps({"timestamp": "2027-01-15T08:00:00Z", "level": "ERROR", "msg": "disk full", "service": "db", "disk": {"free": 0}}).encode(),
        json.dumps({"ts": 1799999999.5, "message": "seconds"}).encode(),
        json.dumps({"time": 1799999999500, "message": "millis"}).encode(),
        b"[1, 2, 3]",
        b"{broken",
        json.dumps({"message": "no time"}).encode(),
    ])
    result = finalized(jsonlines_to_arrow(body, context(NOW).adapt), context(NOW))
    rows = plain_rows(result.table)
    assert [(r["body"], r["time"], r["severity_number"], r["service_name"]) for r in rows] == [
        ("disk full", 1800000000 * NS, 17, "db"),
        ("seconds", 1799999999500000000, 0, "unknown_service"),
        ("millis", 1799999999500000000, 0, "unknown_service"),
        ("no time", NOW, 0, "unknown_service"),
    ]
    assert rows[0]["attributes"] == {"disk": '{"free":0}'} and rows[3]["quality_flags"] == ["time_from_received"]
    assert result.outcome.reasons() == {"line is not a JSON object": 1, "line is not valid JSON": 1}


ACCESS = [
    '10.0.0.1 - - [15/Jan/2027:08:00:01 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl" 0.120',
    '10.0.0.2 - - [15/Jan/2027:08:00:02 +0000] "GET /b HTTP/1.1" 200 100 "-" "curl" 0.030',
    '10.0.0.3 - - [15/Jan/2027:08:00:03 +0000] "POST /c HTTP/1.1" 503 0 "-" "curl" 1.500',
    'not an access log line',
]


def test_nginx_preset_counts_bytes_and_latency_by_method_and_status_class():
    body = "\n".join(json.dumps({"timestamp": NOW / 1e9 - 5, "message": line, "service": "web"}) for line in ACCESS).encode()
    logs = finalized(jsonlines_to_arrow(body, context(NOW).adapt), context(NOW)).table
    rule = LogMetricRule.build("http.server.requests", preset="nginx_access", service="web")
    rows = plain_rows(finalized(derive([rule], logs, AttributeSets()), context(NOW, source_kind="log")).table)
    got = {(r["metric_name"], r["attributes"]["method"], r["attributes"]["status_class"]): r for r in rows}
    assert got[("http.server.requests", "GET", "2xx")]["value"] == 2
    assert got[("http.server.requests", "POST", "5xx")]["value"] == 1
    assert got[("http.server.requests.bytes", "GET", "2xx")]["value"] == 612
    latency = got[("http.server.requests.duration", "GET", "2xx")]
    assert latency["count"] == 2 and abs(latency["sum"] - 0.15) < 1e-9
    assert {r["temporality"] for r in rows} == {"delta"} and {r["service_name"] for r in rows} == {"web"}


def test_the_stock_combined_format_gives_counts_and_bytes_but_no_latency():
    stock = [line.rsplit(" ", 1)[0] for line in ACCESS[:3]]  # nginx's default `combined`: no $request_time
    body = "\n".join(json.dumps({"timestamp": NOW / 1e9 - 5, "message": line, "service": "web"}) for line in stock).encode()
    logs = finalized(jsonlines_to_arrow(body, context(NOW).adapt), context(NOW)).table
    rule = LogMetricRule.build("http.server.requests", preset="nginx_access", service="web")
    rows = plain_rows(finalized(derive([rule], logs, AttributeSets()), context(NOW, source_kind="log")).table)
    assert sorted({r["metric_name"] for r in rows}) == ["http.server.requests", "http.server.requests.bytes"]


def test_apache_microseconds_are_scaled_to_seconds():
    line = '10.0.0.1 - - [15/Jan/2027:08:00:01 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl" 120000'  # %D
    body = json.dumps({"timestamp": NOW / 1e9 - 5, "message": line, "service": "web"}).encode()
    logs = finalized(jsonlines_to_arrow(body, context(NOW).adapt), context(NOW)).table
    rule = LogMetricRule.build("http.server.requests", preset="apache_combined", duration_scale=1e-6)
    rows = plain_rows(finalized(derive([rule], logs, AttributeSets()), context(NOW, source_kind="log")).table)
    [latency] = [r for r in rows if r["metric_name"] == "http.server.requests.duration"]
    assert abs(latency["sum"] - 0.12) < 1e-9


def test_severity_by_service_counts_every_record_under_the_opentelemetry_severity():
    levels = (("info", "a"), ("INFO", "a"), ("error", "a"), ("info", "b"), ("warn", "b"), ("warning", "b"),
              ("WARN", "b"), ("chatty", "b"))
    body = b"\n".join(json.dumps({"level": lvl, "msg": "x", "service": svc}).encode() for lvl, svc in levels)
    logs = finalized(jsonlines_to_arrow(body, context(NOW).adapt), context(NOW)).table
    syslog = finalized(syslog_to_arrow([b"<12>1 2027-01-15T08:00:00Z h b - - - disk low"], context(NOW, source_kind="log").adapt),
                       context(NOW)).table
    rule = LogMetricRule.build("log.records", preset="severity_by_service")
    rows = plain_rows(finalized(derive([rule], pa.concat_tables([logs, syslog]), AttributeSets()), context(NOW)).table)
    assert sorted((r["service_name"], r["attributes"]["severity"], r["value"]) for r in rows) == [
        ("a", "ERROR", 1.0), ("a", "INFO", 2.0), ("b", "INFO", 1.0), ("b", "UNSPECIFIED", 1.0), ("b", "WARN", 4.0)]


def test_severity_names_follow_the_number_then_the_text():
    assert [severity_name(n) for n in (1, 4, 5, 9, 12, 13, 17, 20, 21, 24)] == [
        "TRACE", "TRACE", "DEBUG", "INFO", "INFO", "WARN", "ERROR", "ERROR", "FATAL", "FATAL"]
    assert [severity_name(0, t) for t in ("Warning", "err", "crit", "", "loud")] == [
        "WARN", "ERROR", "ERROR", "UNSPECIFIED", "UNSPECIFIED"]
    assert severity_name(99, "info") == "INFO"
