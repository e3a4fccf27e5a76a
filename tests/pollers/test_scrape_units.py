from __future__ import annotations

import json

from telemetry_gateway.adapters.prometheus.families import Sample
from telemetry_gateway.gateway.components.scrape.poller import Target, apply_target_labels, parse, read_file_sd

TEXT = """# HELP ifHCInOctets octets in
# TYPE ifHCInOctets counter
ifHCInOctets{ifName="lo"} 10
# TYPE http_requests_total counter
http_requests_total{code="200"} 5 1700000000123
# TYPE temp gauge
temp 21.5
"""


def test_text_format_keeps_counter_names_as_exposed_and_sample_timestamps():
    scraped = parse(TEXT, "text/plain; version=0.0.4", 1_800_000_000_000)
    assert [(s.name, s.labels, s.value, s.timestamp_ms) for s in scraped.samples] == [
        ("ifHCInOctets", {"ifName": "lo"}, 10.0, 1_800_000_000_000),
        ("http_requests_total", {"code": "200"}, 5.0, 1_700_000_000_123),
        ("temp", {}, 21.5, 1_800_000_000_000),
    ]
    assert scraped.families["http_requests_total"].type == "counter" and scraped.families["temp"].type == "gauge"


def test_openmetrics_is_parsed_with_its_own_rules():
    body = "# TYPE x_seconds counter\n# UNIT x_seconds seconds\n# HELP x_seconds help\nx_seconds_total 3\n# EOF\n"
    scraped = parse(body, "application/openmetrics-text; version=1.0.0", 1)
    [sample] = scraped.samples
    assert sample.name == "x_seconds_total" and scraped.families["x_seconds"].unit == "seconds"


def test_target_labels_win_unless_honor_labels():
    target = Target("http://10.0.0.1:9100/metrics", "node", (("site", "a"),))
    clash = [Sample("m", {"job": "other", "site": "b", "x": "1"}, 1.0, 0)]
    apply_target_labels(clash, target, honor_labels=False)
    assert clash[0].labels == {"exported_job": "other", "exported_site": "b", "x": "1", "site": "a", "job": "node",
                               "instance": "10.0.0.1:9100"}
    honored = [Sample("m", {"job": "other", "x": "1"}, 1.0, 0)]
    apply_target_labels(honored, target, honor_labels=True)
    assert honored[0].labels["job"] == "other" and honored[0].labels["site"] == "a"


def test_file_sd_groups(tmp_path):
    path = tmp_path / "edge.json"
    path.write_text(json.dumps([{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"job": "node", "dc": "x"}},
                                {"targets": ["10.0.0.3:443"], "labels": {"__scheme__": "https", "__metrics_path__": "/m"}}]))
    assert read_file_sd(path) == [
        Target("http://10.0.0.1:9100/metrics", "node", (("dc", "x"),)),
        Target("http://10.0.0.2:9100/metrics", "node", (("dc", "x"),)),
        Target("https://10.0.0.3:443/m", "edge", ()),
    ]


def test_a_sample_timestamp_past_float_range_fails_the_scrape_with_a_reason():
    # Found by the fuzzer: `Inf` and 1e400 as timestamps raised OverflowError out of the poller.
    import pytest

    from telemetry_gateway.gateway.components.scrape.poller import ScrapeFailed

    for stamp in ("Inf", "1e400"):
        with pytest.raises(ScrapeFailed, match="unparsable exposition"):
            parse(f"# TYPE temp gauge\ntemp 21.5 {stamp}\n", "text/plain; version=0.0.4", 1)


def test_a_target_loop_survives_an_unexpected_error_and_says_so(caplog):
    import asyncio

    from telemetry_gateway.gateway.components.scrape.config import ScrapeConfig
    from telemetry_gateway.gateway.components.scrape.poller import ScrapePoller

    poller = ScrapePoller(ScrapeConfig(interval=0.05, timeout=0.05, jitter=0), pipeline=None)
    calls = []

    async def flaky(target):
        calls.append(target)
        if len(calls) == 1:
            raise RuntimeError("a bug in the first scrape")

    poller.scrape_once = flaky

    async def run():
        task = asyncio.get_running_loop().create_task(poller._loop(Target("http://127.0.0.1:9/metrics", "job")))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert len(calls) >= 3
    assert "scraping http://127.0.0.1:9/metrics failed unexpectedly" in caplog.text and "a bug in the first scrape" in caplog.text


def test_a_malformed_file_sd_keeps_the_last_targets(tmp_path, caplog):
    from telemetry_gateway.gateway.components.scrape.config import ScrapeConfig
    from telemetry_gateway.gateway.components.scrape.poller import ScrapePoller

    path = tmp_path / "targets.json"
    path.write_text(json.dumps([{"targets": ["127.0.0.1:9100"], "labels": {"job": "node"}}]))
    poller = ScrapePoller(ScrapeConfig(file_sd=[path]), pipeline=None)
    first = poller._refresh_files()
    assert [t.url for t in first] == ["http://127.0.0.1:9100/metrics"]
    import os
    path.write_text(json.dumps([{"targets": ["127.0.0.1:1"], "labels": ["abc"]}]))  # labels not a mapping
    os.utime(path, (1, 1))
    assert poller._refresh_files() == first
    assert "unreadable, keeping its last targets" in caplog.text


def test_labels_with_empty_values_are_absent_as_in_prometheus():
    body = ('# TYPE node_os_info gauge\n'
            'node_os_info{build_id="",id="debian",name="Debian GNU/Linux"} 1\n')
    [sample] = parse(body, "text/plain; version=0.0.4", 1_800_000_000_000).samples
    assert sample.labels == {"id": "debian", "name": "Debian GNU/Linux"}
