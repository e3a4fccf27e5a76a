"""A real Prometheus scraping a real node_exporter and remote-writing to the gateway."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import cramjam
import pytest

from telemetry_gateway.adapters.prometheus.prompb import WriteRequest
from tests.durability.test_durability import wait_for
from tests.peers import node_exporter, prometheus
from tests.receivers.otlp_requests import post, unique

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


PARTS = {  # Prometheus's own histogram and summary families, and what each part must stay
    "prometheus_http_request_duration_seconds_bucket": ("sum", True),
    "prometheus_http_request_duration_seconds_count": ("sum", True),
    "prometheus_http_request_duration_seconds_sum": ("sum", False),
    "go_gc_duration_seconds_count": ("sum", True),
    "go_gc_duration_seconds_sum": ("sum", False),
    "go_gc_duration_seconds": ("gauge", False),
    "prometheus_http_requests_total": ("sum", True),
}


def test_histogram_and_summary_parts_keep_one_kind_across_a_gateway_restart(start_gateway, tmp_path):
    gw = start_gateway()
    # Metadata as Prometheus sends it by default: once a minute, so not again before this test ends.
    prom, _ = prometheus(tmp_path, {"prometheus": ["SELF"]}, gw.http_url + "/api/v1/write", metadata_interval="1m")
    try:
        names = ", ".join(f"'{n}'" for n in PARTS)
        query = ("SELECT metric_name AS m, series_id AS s, groupUniqArray((kind, is_monotonic)) AS kinds, "
                 "min(received_time) < {t} AND max(received_time) > {t} AS spans_restart "
                 f"FROM telemetry.metric_points WHERE metric_name IN ({names}) GROUP BY m, s")
        assert wait_for(lambda: {r["m"] for r in gw.rows(query.format(t="now64(9)"))} >= set(PARTS), timeout=60)
        time.sleep(3)
        assert gw.stop() == 0
        gw.start()
        restarted = time.time_ns()
        time.sleep(8)
        rows = gw.rows(query.format(t=f"fromUnixTimestamp64Nano({restarted})"))
    finally:
        prom.stop()
    assert {r["m"] for r in rows} == set(PARTS)
    for r in rows:
        assert [tuple(k) for k in r["kinds"]] == [PARTS[r["m"]]], r
    assert sum(r["spans_restart"] for r in rows) >= len(PARTS)  # series stored before and after the restart


def test_metadata_is_remembered_across_a_restart(start_gateway):
    from tests.adapters.prometheus.test_remote_write import _series
    from tests.receivers.test_remote_write import HEADERS as RW_HEADERS

    gw = start_gateway()
    job = unique("rwmeta")

    def send(with_metadata: bool) -> None:
        request = WriteRequest()
        _series(request, "app_latency_seconds_count", 4, time.time_ns() // 10**6, test=job)
        if with_metadata:
            request.metadata.add(type=3, metric_family_name=b"app_latency_seconds", help=b"App latency.")
        body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
        assert post(gw.http_url, "/api/v1/write", body, RW_HEADERS)[0] == 204

    send(True)
    assert gw.stop() == 0  # SIGTERM saves what it knows
    gw.start()
    send(False)  # no metadata and no bucket series: only the saved metadata can type it
    rows = gw.wait_rows(f"SELECT kind, is_monotonic AS mono, description AS d FROM telemetry.metric_points "
                        f"WHERE attributes['test'] = '{job}'", 2)
    assert rows == [{"kind": "sum", "mono": True, "d": "App latency."}] * 2


def test_a_description_that_arrives_later_updates_the_series_catalog(start_gateway):
    from tests.adapters.prometheus.test_remote_write import _series
    from tests.receivers.test_remote_write import HEADERS as RW_HEADERS

    gw = start_gateway()
    job = unique("rwlate")
    for with_metadata in (False, True):
        request = WriteRequest()
        _series(request, "queue_depth", 4, time.time_ns() // 10**6, test=job)
        if with_metadata:
            request.metadata.add(type=2, metric_family_name=b"queue_depth", help=b"Items waiting.", unit=b"{item}")
        body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
        assert post(gw.http_url, "/api/v1/write", body, RW_HEADERS)[0] == 204
        time.sleep(0.3)
    rows = gw.wait_rows("SELECT description AS d, unit AS u FROM telemetry.series FINAL "
                        f"WHERE attributes['test'] = '{job}'", 1)
    assert rows == [{"d": "Items waiting.", "u": "{item}"}]
    versions = gw.rows(f"SELECT description AS d FROM telemetry.series WHERE attributes['test'] = '{job}' ORDER BY updated")
    assert [r["d"] for r in versions] == ["", "Items waiting."]
