"""The stages in process: finalize, the processing chain, the router, per-tenant state, accounting."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.apm.red import SeriesLimiter, SpanFact
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow, AdaptContext, Outcome
from telemetry_gateway.adapters.log_metrics import LogMetricRule
from telemetry_gateway.adapters.normalize import ServiceCatalog
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway import accounting, stages
from telemetry_gateway.gateway.batch import Batch, Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.red_windows import RedWindows, WindowKey, window_batch
from telemetry_gateway.gateway.router import RegionRouter
from telemetry_gateway.schema import INGEST_LOG, LOGS, POINTS, arrow_schema

NS = 1_000_000_000
NOW = 1_800_000_000 * NS
FINALIZER = Finalizer(AcceptWindow(max_age_ns=3600 * NS, max_future_ns=60 * NS))


def provenance(tenant: str = "default") -> Provenance:
    return Provenance("otlp_metrics", "otlp", "test", Caller("http", "10.0.0.1"), "a" * 32, NOW, tenant)


def points(sets: AttributeSets, rows: list[dict]) -> PointRows:
    builder = PointRows(sets)
    for row in rows:
        builder.add(name=row.get("name", "m"), kind=row.get("kind", "gauge"), time_ns=row.get("time", NOW - NS),
                    value=row.get("value", 1.0), attributes=row.get("attributes", {"k": "v"}),
                    resource={"service.name": "svc"}, unit=row.get("unit", ""),
                    temporality=row.get("temporality", "unspecified"), monotonic=row.get("monotonic", False))
    return builder


def test_finalize_refuses_by_window_with_codes_and_flags_shared_and_own():
    sets = AttributeSets()
    draft = points(sets, [{"value": 1.0}, {"value": math.inf}, {"time": 0}, {"time": NOW - 7200 * NS},
                          {"time": NOW + 120 * NS}]).finish()
    draft.flags["cardinality_overflow"] = np.array([True, False, False, False, False])
    outcome = Outcome()
    table = FINALIZER.finish(draft, provenance(), outcome)
    assert outcome.by_code() == {"time_missing": 1, "too_old": 1, "too_far_ahead": 1}
    assert table.column("quality_flags").to_pylist() == [["cardinality_overflow"], ["non_finite"]]
    assert table.schema.equals(arrow_schema(POINTS))
    assert set(table.column("batch_id").to_pylist()) == {"a" * 32}
    assert table.column("region").to_pylist() == ["", ""]  # the router decides


def test_finalize_fills_what_a_kind_does_not_use_with_the_schema_default():
    rows = PointRows(AttributeSets())
    rows.add(name="h", kind="histogram", time_ns=NOW - NS, attributes={}, resource={}, count=2, sum_=3.0,
             bounds=[1.0], bucket_counts=[1, 1])
    table = FINALIZER.finish(rows.finish(), provenance(), Outcome())
    assert math.isnan(table.column("value")[0].as_py())  # `fill` of the value column, not 0
    assert table.column("exp_positive_counts").to_pylist() == [[]]


def test_series_ids_and_attribute_state_are_per_tenant():
    a, b = AttributeSets(), AttributeSets()
    ta = FINALIZER.finish(points(a, [{}]).finish(), provenance("a"), Outcome())
    tb = FINALIZER.finish(points(b, [{}]).finish(), provenance("b"), Outcome())
    assert ta.column("series_id")[0] != tb.column("series_id")[0]
    points(a, [{"attributes": {"only": "a"}}]).finish()
    assert ("labels", (("only", "a"),)) not in b.ids and len(a.ids) > len(b.ids)


def work_of(table: pa.Table, table_kind=POINTS) -> stages.Work:
    work = stages.Work(provenance(), AdaptContext(NOW), Outcome())
    work.batches.append(Batch(table_kind, table, work.provenance))
    return work


def test_cumulative_to_delta_counts_the_baselines_it_drops():
    sets = AttributeSets()
    stage = stages.CumulativeToDelta(["requests_total"])
    first = work_of(FINALIZER.finish(points(sets, [{"name": "requests_total", "kind": "sum", "value": 10.0,
                                                   "temporality": "cumulative", "monotonic": True}]).finish(),
                                     provenance(), Outcome()))
    stage.process(first)
    assert first.dropped == {"cumulative_to_delta": 1} and first.batches[0].rows.num_rows == 0
    second = work_of(FINALIZER.finish(points(sets, [{"name": "requests_total", "kind": "sum", "value": 15.0, "time": NOW,
                                                    "temporality": "cumulative", "monotonic": True}]).finish(),
                                      provenance(), Outcome()))
    stage.process(second)
    assert second.dropped["cumulative_to_delta"] == 0
    assert second.batches[0].rows.column("value").to_pylist() == [5.0]
    assert second.batches[0].rows.column("temporality").to_pylist() == ["delta"]


def test_the_chain_derives_log_metrics_and_normalizes_them_like_any_points(tmp_path):
    sets = AttributeSets()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("services:\n  web: {team: edge}\n")
    rule = LogMetricRule.build("log.records", preset="severity_by_service")
    chain = stages.Chain([stages.LogToMetric(FINALIZER, sets, [rule], 10), stages.Units(),
                          stages.CumulativeToDelta([]), stages.Catalog(ServiceCatalog(catalog))])
    logs = pa.Table.from_pylist([{"time": NOW - NS, "body": "x", "service_name": "web", "severity_text": "info",
                                  "resource_attributes": [("service.name", "web")]}] * 3, schema=arrow_schema(LOGS))
    work = work_of(logs, LOGS)
    chain.run(work)
    derived = work.of(POINTS)
    assert work.derived == {("log_to_metric", "metric_points"): 1}
    assert derived[0].rows.column("value").to_pylist() == [3.0]
    assert derived[0].provenance.batch_id != work.provenance.batch_id  # its own batch, for the spool
    assert dict(derived[0].rows.column("resource_attributes")[0].as_py())["service.owner.team"] == "edge"
    assert dict(work.batches[0].rows.column("resource_attributes")[0].as_py())["service.owner.team"] == "edge"


def test_red_series_counts_spans_as_accepted_and_refuses_with_codes():
    facts = [SpanFact("svc", "/a", "2xx", False, NOW - 2 * NS, NOW - NS, "01" * 16),
             SpanFact("svc", "/a", "2xx", False, NOW - 2 * NS, 0, "02" * 16)]
    work = stages.Work(provenance(), AdaptContext(NOW, FINALIZER.window), Outcome(), spans=facts)
    stages.RedSeries(FINALIZER, AttributeSets(), SeriesLimiter(100), 10).process(work)
    assert work.accepted == 1 and work.outcome.by_code() == {"invalid_span": 1}
    assert work.derived == {("red_series", "metric_points"): 3}


def test_held_red_points_are_one_batch_per_window_and_not_counted_as_stored():
    facts = [SpanFact("svc", "/a", "2xx", False, NOW - 30 * NS, NOW - 25 * NS, "01" * 16),
             SpanFact("svc", "/a", "2xx", False, NOW - 30 * NS, NOW - 24 * NS, "02" * 16),
             SpanFact("svc", "/a", "2xx", False, NOW - 9 * NS, NOW - 5 * NS, "03" * 16)]
    work = stages.Work(provenance("acme"), AdaptContext(NOW, FINALIZER.window), Outcome(), spans=facts)
    stages.RedSeries(FINALIZER, AttributeSets(), SeriesLimiter(100), 10, hold="red").process(work)
    assert work.derived == {} and work.accepted == 3
    assert sorted(b.rows.column("time").cast(pa.int64()).to_pylist()[0] for b in work.batches) == [NOW - 20 * NS, NOW]
    assert all(b.hold == "red" and b.num_rows == 3 for b in work.batches)
    assert len({b.batch_id for b in work.batches} | {work.provenance.batch_id}) == 3
    row = accounting.log_row(work, accounting.RequestAccount.of(work), "default")
    assert row["stored_rows"] == {} and row["accepted"] == 3


def held(requests: list[list[SpanFact]], tenant: str = "acme") -> list[Batch]:
    out = []
    sets, limiter = AttributeSets(), SeriesLimiter(100)
    for facts in requests:
        work = stages.Work(provenance(tenant), AdaptContext(NOW, FINALIZER.window), Outcome(), spans=facts)
        stages.RedSeries(FINALIZER, sets, limiter, 10, hold="red").process(work)
        out += [routed for b in work.batches for routed in RegionRouter(["default"]).route(b).batches]
    return out


def span(seconds: float, trace: str, status: str = "2xx", error: bool = False) -> SpanFact:
    return SpanFact("svc", "/a", status, error, NOW - 5 * NS - int(seconds * NS), NOW - 5 * NS, trace)


def test_a_window_merges_every_request_into_one_row_per_series():
    requests = [[span(0.1, "01" * 16)], [span(2.0, "02" * 16)], [span(0.3, "03" * 16, "5xx", True)], [span(0.2, "04" * 16)]]
    batches = held(requests)
    key = WindowKey(NOW, "acme", "default", False)
    merged = window_batch(key, batches)
    assert set(merged.consumes) == {b.batch_id for b in batches} and merged.provenance.tenant == "acme"
    rows = {(r["metric_name"], dict(r["attributes"])["status_class"]): r for r in merged.rows.to_pylist()}
    assert len(merged.rows) == 6  # 3 metrics x 2 status classes, from 12 held rows
    assert rows[("apm.requests", "2xx")]["value"] == 3 and rows[("apm.requests", "5xx")]["value"] == 1
    assert rows[("apm.errors", "5xx")]["value"] == 1 and rows[("apm.errors", "2xx")]["value"] == 0
    duration = rows[("apm.request.duration", "2xx")]
    assert duration["count"] == 3 and abs(duration["sum"] - 2.3) < 1e-9 and (duration["min"], duration["max"]) == (0.1, 2.0)
    assert sum(duration["bucket_counts"]) == 3
    assert duration["exemplar_trace_ids"] == ["02" * 16, "04" * 16, "01" * 16]  # the slowest first
    assert rows[("apm.requests", "2xx")]["exemplar_trace_ids"] == duration["exemplar_trace_ids"]
    assert {r["batch_id"] for r in rows.values()} == {merged.batch_id}
    assert all(r["quality_flags"] == [] for r in rows.values())
    late = window_batch(WindowKey(NOW, "acme", "default", True), batches[:1])
    assert {tuple(r["quality_flags"]) for r in late.rows.to_pylist()} == {("late",)}


class KeptBatches:
    """A sink that records what it is asked to keep (the store and spool are tested elsewhere)."""

    holds = True

    def __init__(self) -> None:
        self.kept: list[Batch] = []

    async def keep(self, batches: list[Batch]) -> None:
        self.kept += batches


def test_windows_close_after_lateness_from_their_end_or_their_last_arrival_and_late_ones_are_flagged():
    import asyncio
    import time

    from telemetry_gateway.gateway.self_metrics import SelfMetrics

    sink = KeptBatches()
    windows = RedWindows(sink, SelfMetrics(), lateness_s=30)
    for batch in held([[span(0.1, "01" * 16)], [span(0.2, "02" * 16)]]):
        windows.add(batch)
    [key] = windows.open
    # The window ended at NOW (2027), after its spans arrived (today): due lateness after its end.
    assert windows.due(NOW + 29 * NS) == [] and windows.due(NOW + 30 * NS) == [key]
    assert asyncio.run(windows.close_due(NOW + 30 * NS)) == 1
    assert [b.num_rows for b in sink.kept] == [3] and windows.open == {}
    # Another request for the written window: its own row, flagged late.
    windows.add(held([[span(0.3, "03" * 16)]])[0])
    [late] = windows.open
    assert late.late
    # An old window (a replay) waits lateness after its last arrival, not its end.
    arrived = time.time_ns()
    old = WindowKey(arrived - 3600 * NS, "acme", "default", False)
    windows.open[old] = type(windows.open[late])([], arrived)
    assert old not in windows.due(arrived + 29 * NS) and old in windows.due(arrived + 30 * NS)


def test_the_router_sets_region_on_the_batch_and_its_rows():
    router = RegionRouter(["eu", "us"])
    table = FINALIZER.finish(points(AttributeSets(), [{}]).finish(), provenance(), Outcome())
    routed = router.route(Batch(POINTS, table, provenance()))
    [batch] = routed.batches
    assert batch.region == "eu" and batch.rows.column("region").to_pylist() == ["eu"] and not routed.refused
    assert RegionRouter(["us", "default"]).default_region == "default"


def test_the_ingest_log_row_counts_what_a_request_became():
    work = work_of(FINALIZER.finish(points(AttributeSets(), [{}, {}]).finish(), provenance(), Outcome()))
    work.accepted = 2
    work.outcome.reject("time_missing", "time_unix_nano is 0", 1)
    work.outcome.warn("non_finite", 1)
    work.dropped["cumulative_to_delta"] = 1
    work.derived[("red_series", "metric_points")] = 3
    account = accounting.RequestAccount.of(work)
    batch = accounting.log_batch(work, account, "eu")
    row = batch.arrow().to_pylist()[0]
    assert batch.table is INGEST_LOG and batch.batch_id != work.provenance.batch_id and batch.region == "eu"
    assert (row["format"], row["transport"], row["peer"], row["batch_id"]) == ("otlp_metrics", "http", "10.0.0.1", "a" * 32)
    assert (row["items"], row["accepted"], row["region"]) == (3, 2, "eu")
    assert dict(row["rejected"]) == {"time_missing": 1} and dict(row["flagged"]) == {"non_finite": 1}
    assert dict(row["dropped"]) == {"cumulative_to_delta": 1}
    assert dict(row["derived"]) == {"red_series:metric_points": 3} and dict(row["stored_rows"]) == {"metric_points": 2}
    assert batch.arrow().schema.equals(arrow_schema(INGEST_LOG))


def test_routed_rows_keep_the_table_schema_exactly():
    """Writers concatenate batches and skip re-conforming ones already in shape: the router must not
    loosen the schema (a plain set_column makes `region` nullable)."""
    table = FINALIZER.finish(points(AttributeSets(), [{}]).finish(), provenance(), Outcome())
    [routed] = RegionRouter(["eu"]).route(Batch(POINTS, table, provenance())).batches
    assert routed.rows.schema.equals(arrow_schema(POINTS))


def test_provenance_survives_the_spool_meta_and_old_records_still_load():
    p = Provenance("remote_write", "remote_write", "remote_write:10.0.0.2", Caller("http", "10.0.0.2", "CN=a", ""),
                   "c" * 32, NOW, "acme", "eu", "agent-1", 7)
    assert Provenance.from_meta({"provenance": p.to_meta()}, "eu", "c" * 32) == p
    old = Provenance.from_meta({"batch_id": "d" * 32, "region": "us", "table": "metric_points"}, "us", "d" * 32)
    assert (old.batch_id, old.region, old.tenant, old.caller.transport) == ("d" * 32, "us", "default", "spool")


def test_a_window_that_cannot_be_merged_is_written_unmerged_not_lost(monkeypatch):
    import asyncio

    from telemetry_gateway.gateway import red_windows
    from telemetry_gateway.gateway.self_metrics import SelfMetrics

    def broken(key, held):
        raise ValueError("a merge bug")

    monkeypatch.setattr(red_windows, "window_batch", broken)
    sink = KeptBatches()
    windows = RedWindows(sink, SelfMetrics(), lateness_s=30)
    batches = held([[span(0.1, "01" * 16)], [span(0.2, "02" * 16)]])
    for batch in batches:
        windows.add(batch)
    assert asyncio.run(windows.close_due(NOW + 31 * NS)) == 1
    assert [b.consumes for b in sink.kept] == [(b.batch_id,) for b in batches]
    assert [b.rows for b in sink.kept] == [b.rows for b in batches] and windows.open == {}


def test_windows_that_cannot_be_written_turn_readiness_red_until_they_are():
    import asyncio

    from telemetry_gateway.gateway.errors import StoreUnavailable
    from telemetry_gateway.gateway.self_metrics import SelfMetrics

    class Failing(KeptBatches):
        failing = True

        async def keep(self, batches):
            if self.failing:
                raise StoreUnavailable("the spool could not be written: disk full")
            await super().keep(batches)

    sink = Failing()
    windows = RedWindows(sink, SelfMetrics(), lateness_s=30)
    windows.add(held([[span(0.1, "01" * 16)]])[0])
    later = NOW + 31 * NS
    assert asyncio.run(windows.close_due(later)) == 0 and len(windows.open) == 1  # kept back, not dropped
    assert windows.health(later) == []  # just due: not yet a problem
    [problem] = windows.health(later + 61 * NS)
    assert problem == "RED windows: 1 overdue by more than 60s (1 held batches not written)"
    sink.failing = False
    assert asyncio.run(windows.close_due(later + 61 * NS)) == 1 and windows.health(later + 61 * NS) == []
