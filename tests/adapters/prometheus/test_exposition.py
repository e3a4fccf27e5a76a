"""The exposition parser against prometheus_client's, on pages recorded from real exporters
(`testdata/record_pages.py`), and on the corners of the format."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as reference_openmetrics
from prometheus_client.parser import text_string_to_metric_families as reference_text

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.prometheus.exposition import InvalidExposition, parse_exposition
from telemetry_gateway.adapters.prometheus.families import FamilyInfo, Sample, add_samples, known_family

PAGES = Path(__file__).parent / "testdata" / "pages"
SCRAPE_MS = 1_800_000_000_000


def reference(body: str, openmetrics: bool) -> tuple[list[tuple], list[FamilyInfo]]:
    """What prometheus_client makes of a page: samples, with names as the page spells them, and
    each sample's family. (Keyed by family name, its families would collide: a counter
    `x_total` is family `x`, and so may be a gauge `x` beside it, as in Go's memstats.)"""
    declared_counters = {line.split()[2] for line in body.splitlines()
                         if line.startswith("# TYPE ") and line.split()[3:4] == ["counter"]}
    samples, families = [], []
    for family in (reference_openmetrics if openmetrics else reference_text)(body):
        info = FamilyInfo(family.type, family.documentation or "", family.unit or "")
        for s in family.samples:
            renamed = not openmetrics and family.name in declared_counters and s.name == family.name + "_total"
            ts = SCRAPE_MS if s.timestamp is None else int(float(s.timestamp) * 1000)
            samples.append((family.name if renamed else s.name, dict(s.labels), float(s.value), ts))
            families.append(info)
    return samples, families


def comparable(samples: list[tuple]) -> list[tuple]:
    return [(n, sorted(l.items()), "nan" if math.isnan(v) else v, t) for n, l, v, t in samples]


@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.iterdir()))
def test_real_pages_parse_as_prometheus_client_parses_them(page):
    body = (PAGES / page).read_text()
    openmetrics = page.endswith(".om")
    expected_samples, expected_families = reference(body, openmetrics)
    got = parse_exposition(body, SCRAPE_MS, openmetrics)
    assert comparable([(s.name, s.labels, s.value, s.timestamp_ms) for s in got.samples]) == comparable(expected_samples)
    assert len(got.samples) >= 5
    for sample, theirs in zip(got.samples, expected_families):
        mine = known_family(sample.name, got.families.get)
        assert (mine.type, mine.help, mine.unit) == (theirs.type, theirs.help, theirs.unit), sample.name


def test_escapes_timestamps_and_special_values():
    body = (
        '# HELP odd A help with a \\\\ backslash and a\\nnewline.\n'
        '# TYPE odd gauge\n'
        'odd{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb",comma="x,y",brace="}"} +Inf 1700000000123\n'
        'odd{empty=""} NaN\n'
        'odd -Inf\n'
        'untyped_total 3\n'
    )
    got = parse_exposition(body, SCRAPE_MS)
    first = got.samples[0]
    assert first.labels == {"path": "C:\\dir", "quote": 'say "hi"', "nl": "a\nb", "comma": "x,y", "brace": "}"}
    assert (first.value, first.timestamp_ms) == (math.inf, 1700000000123)
    assert math.isnan(got.samples[1].value) and got.samples[1].labels == {"empty": ""}
    assert got.samples[2].value == -math.inf and got.samples[2].timestamp_ms == SCRAPE_MS
    assert got.families["odd"] == FamilyInfo("gauge", "A help with a \\ backslash and a\nnewline.", "")
    assert got.families["untyped_total"] == FamilyInfo("unknown")  # outside any declared family


def test_openmetrics_seconds_units_and_exemplars():
    body = ('# TYPE rpc_seconds histogram\n# UNIT rpc_seconds seconds\n'
            'rpc_seconds_bucket{le="0.5"} 3 # {trace_id="abc"} 0.2 1700000000.5\n'
            'rpc_seconds_count 3 1700000001.250\n# EOF\n')
    got = parse_exposition(body, SCRAPE_MS, openmetrics=True)
    assert [(s.name, s.value, s.timestamp_ms) for s in got.samples] == [
        ("rpc_seconds_bucket", 3.0, SCRAPE_MS), ("rpc_seconds_count", 3.0, 1700000001250)]
    assert got.families == {"rpc_seconds": FamilyInfo("histogram", "", "seconds")}


@pytest.mark.parametrize("line", ['x{a="1" 2', 'x{a=1} 2', "x", "x 1 2 3", 'x{a="1"} notanumber', "{} 1",
                                  "x 1 99999999999999999999"])
def test_broken_lines_are_refused_with_the_line(line):
    with pytest.raises(InvalidExposition, match="line 2"):
        parse_exposition(f"ok 1\n{line}\n", SCRAPE_MS)


def test_scraped_samples_repeated_for_a_series_and_time_are_refused_once_each():
    a, b = {"job": "j", "x": "1"}, {"job": "j", "x": "2"}
    samples = [Sample("m", dict(a), 1.0, 1), Sample("m", dict(a), 2.0, 2), Sample("m", dict(a), 9.0, 1),
               Sample("m", dict(b), 3.0, 1), Sample("m", dict(a), 9.0, 2), Sample("m", dict(a), 4.0, 3)]
    rows, outcome = PointRows(AttributeSets()), Outcome()
    add_samples(rows, samples, lambda name: None, outcome)
    table = rows.finish().columns
    assert outcome.rejected_count == 2
    assert table["value"].to_pylist() == [1.0, 2.0, 3.0, 4.0]
