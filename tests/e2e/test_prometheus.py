"""A real Prometheus scraping a real node_exporter and remote-writing to the gateway."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from tests.peers import node_exporter, prometheus

pytestmark = pytest.mark.integration


def prometheus_samples(port: int, selector: str, window_s: int, at: float) -> dict[tuple, list[tuple[int, str]]]:
    """Raw samples Prometheus holds: {(sorted labels): [(ms, value)]}."""
    query = urllib.parse.urlencode({"query": f"{selector}[{window_s}s]", "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=10) as response:
        body = json.loads(response.read())
    out = {}
    for series in body["data"]["result"]:
        labels = tuple(sorted(series["metric"].items()))
        out[labels] = [(round(float(ts) * 1000), value) for ts, value in series["values"]]
    return out


def gateway_samples(gateway, name: str, since_ms: int, until_ms: int) -> dict[tuple, list[tuple[int, str]]]:
    rows = gateway.rows(
        "SELECT attributes, resource_attributes AS r, toString(toUnixTimestamp64Milli(time)) AS ms, "
        f"toString(value) AS v FROM telemetry.metric_points WHERE metric_name = '{name}' "
        f"AND time BETWEEN fromUnixTimestamp64Milli({since_ms}) AND fromUnixTimestamp64Milli({until_ms}) ORDER BY time"
    )
    out: dict[tuple, list[tuple[int, str]]] = {}
    for row in rows:
        labels = dict(row["attributes"], __name__=name, job=row["r"]["service.name"], instance=row["r"]["service.instance.id"])
        out.setdefault(tuple(sorted(labels.items())), []).append((int(row["ms"]), row["v"]))
    return out


def same_number(a: str, b: str) -> bool:
    return float(a) == float(b)


def test_stored_series_match_what_prometheus_holds(gateway, tmp_path):
    exporter, exporter_port = node_exporter(tmp_path)
    prom, prom_port = prometheus(tmp_path, {"node": [f"127.0.0.1:{exporter_port}"], "prometheus": ["SELF"]},
                                 gateway.http_url + "/api/v1/write")
    try:
        time.sleep(12)
        at = time.time() - 3  # remote write may still be sending the newest samples
        window = 5
        checked = 0
        for selector, name in (
            ("node_memory_MemTotal_bytes", "node_memory_MemTotal_bytes"),
            ('node_cpu_seconds_total{mode="idle"}', "node_cpu_seconds_total"),
            ("go_gc_duration_seconds_count", "go_gc_duration_seconds_count"),
            ("up", "up"),
        ):
            expected = prometheus_samples(prom_port, selector, window, at)
            assert expected, f"Prometheus has no {selector}"
            since, until = round((at - window) * 1000), round(at * 1000)
            got = gateway_samples(gateway, name, since, until)
            for labels, samples in expected.items():
                stored = dict(got.get(labels, []))
                assert samples, labels
                for ms, value in samples:
                    assert ms in stored, f"{labels} @ {ms} missing from the gateway"
                    assert same_number(stored[ms], value), f"{labels} @ {ms}: {stored[ms]} != {value}"
                    checked += 1
        assert checked >= 8
        kinds = gateway.rows(
            "SELECT metric_name, any(kind) AS kind, any(unit) AS unit, any(is_monotonic) AS mono FROM telemetry.metric_points "
            "WHERE metric_name IN ('node_cpu_seconds_total', 'node_memory_MemTotal_bytes') AND source_kind = 'remote_write' "
            "GROUP BY metric_name ORDER BY metric_name"
        )
        assert kinds == [
            {"metric_name": "node_cpu_seconds_total", "kind": "sum", "unit": "s", "mono": True},
            {"metric_name": "node_memory_MemTotal_bytes", "kind": "gauge", "unit": "By", "mono": False},
        ]
        # Prometheus's own request histogram, assembled by the prometheus_histograms view,
        # equals the buckets Prometheus holds at the same instant.
        [hist] = gateway.rows(
            "SELECT toString(toUnixTimestamp64Milli(time)) AS ms, toString(le_bounds) AS le, cumulative_counts AS c "
            "FROM telemetry.prometheus_histograms WHERE metric_name = 'prometheus_http_request_duration_seconds' "
            "AND attributes['handler'] = '/metrics' AND time <= fromUnixTimestamp64Milli("
            f"{round(at * 1000)}) ORDER BY time DESC LIMIT 1")
        buckets = prometheus_samples(prom_port, 'prometheus_http_request_duration_seconds_bucket{handler="/metrics"}', window, at)
        by_le = {dict(labels)["le"]: dict(samples)[int(hist["ms"])] for labels, samples in buckets.items()}
        ordered = sorted(by_le.items(), key=lambda kv: float(kv[0]))
        assert hist["le"] == "[" + ",".join("inf" if le == "+Inf" else str(float(le)).rstrip("0").rstrip(".")
                                            for le, _ in ordered) + "]"
        assert hist["c"] == [int(float(v)) for _, v in ordered]
    finally:
        prom.stop()
        exporter.stop()
