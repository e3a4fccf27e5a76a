"""Query cost on a day of data: the questions SLO tools and people ask, timed on the store's layout.

    python -m loadtest.queries                        # 100k series, a point every 10 min, over a day
    python -m loadtest.queries --series 20000 --step 300

Fills a fresh embedded store (the schema the gateway creates) straight from
the engine (`INSERT ... SELECT FROM numbers()`): `--series` gauge series
(10 attributes each, 50 metric names, 1000 hosts) over the last day, RED
series (20 services x 10 operations x 3 status classes, 10 s windows, the
last hour) and 1000 latency histograms. Then it runs each query 31 times and
prints the median, and the bytes on disk per point:

1. one series over a day;
2. a service's request rate and error ratio per minute over an hour;
3. the top 10 hosts by a metric's mean over an hour, and over the day;
4. the p99 latency over an hour from histogram buckets.

It fills the store at schema version 6 (the wide `metric_points` table),
keeps that table's parts in a second database, migrates the store to the
current layout (narrow rows per kind, labels once per series in `series`,
`metric_points` a Merge table over them), times the queries on both layouts
in turns, and the same questions written for the narrow tables (`samples`,
`histogram_points`, `series`), checks that every answer is the same (numbers
to 12 significant digits), and prints them with their ratios to the old. Gauge points come
in batches of 1000 series per step, so there are as many batch ids as such a
day would bring.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.schema.layout import LAYOUT_TABLES

DB = "queries"
OLD_DB = "queries_v6"  # the wide table, kept beside the migrated store
COLUMNS = ("time, start_time, metric_name, unit, kind, temporality, is_monotonic, value, count, sum, bucket_bounds, "
           "bucket_counts, service_name, resource_attributes, attributes, source_kind, tenant, region, batch_id, series_id")


def fill(store: EmbeddedStore, series: int, step_s: int) -> int:
    now = int(time.time()) // 600 * 600
    points_per_series = 86400 // step_s
    gauges = (
        f"INSERT INTO {DB}.metric_points ({COLUMNS}) SELECT "
        f"toDateTime64({now} - 86400 + intDiv(number, {series}) * {step_s}, 9, 'UTC'), toDateTime64(0, 9, 'UTC'), "
        "concat('bench.metric.', toString(s % 50)), '1', 'gauge', 'unspecified', false, "
        "sin(number) * 100 + 100, 0, NULL, [], [], concat('svc-', toString(s % 20)), "
        "map('service.name', concat('svc-', toString(s % 20)), 'host.name', concat('host-', toString(s % 1000))), "
        "map('host', concat('host-', toString(s % 1000)), 'cpu', toString(s % 64), 'mode', toString(s % 7), "
        "'disk', toString(s % 13), 'zone', toString(s % 3), 'rack', toString(s % 40), 'k6', toString(s % 11), "
        "'k7', toString(s % 17), 'k8', toString(s % 19), 'series', toString(s)), "
        "'otlp', 'default', 'default', leftPad(lower(hex(cityHash64(intDiv(number, 1000)))), 32, 'a'), cityHash64(s) "
        f"FROM (SELECT number, number % {series} AS s FROM numbers({series * points_per_series}))"
    )
    red = (
        f"INSERT INTO {DB}.metric_points ({COLUMNS}) SELECT "
        f"toDateTime64({now} - 3600 + intDiv(number, 1200) * 10, 9, 'UTC'), "
        f"toDateTime64({now} - 3610 + intDiv(number, 1200) * 10, 9, 'UTC'), "
        "if(number % 2 = 0, 'apm.requests', 'apm.errors'), '{request}', 'sum', 'delta', true, "
        "if(number % 2 = 0, 50 + number % 7, number % 3), 0, NULL, [], [], concat('svc-', toString(r % 20)), "
        "map('service.name', concat('svc-', toString(r % 20))), "
        "map('operation', concat('/op/', toString(r % 10)), 'status_class', ['2xx', '4xx', '5xx'][1 + r % 3]), "
        "'apm', 'default', 'default', 'bench', cityHash64(number % 2, r) "
        "FROM (SELECT number, intDiv(number % 1200, 2) AS r FROM numbers(360 * 1200))"
    )
    histograms = (
        f"INSERT INTO {DB}.metric_points ({COLUMNS}) SELECT "
        f"toDateTime64({now} - 86400 + intDiv(number, 1000) * {step_s}, 9, 'UTC'), "
        f"toDateTime64({now} - 86400 + intDiv(number, 1000) * {step_s} - {step_s}, 9, 'UTC'), "
        "'http.server.request.duration', 's', 'histogram', 'delta', false, nan, 100, 12.5, "
        "[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], "
        "[5, 10, 20, 25, 20, 10, 5, 3, 1, 1, number % 2], concat('svc-', toString(h % 20)), "
        "map('service.name', concat('svc-', toString(h % 20))), map('route', concat('/r/', toString(h % 50))), "
        "'otlp', 'default', 'default', 'bench', cityHash64('h', h) "
        f"FROM (SELECT number, number % 1000 AS h FROM numbers({1000 * points_per_series}))"
    )
    for statement in (gauges, red, histograms):
        store.execute(statement)
    store.execute(f"OPTIMIZE TABLE {DB}.metric_points FINAL")
    return int(store.execute(f"SELECT count() FROM {DB}.metric_points").strip())


def queries(now: int, series_id: int) -> dict[str, str]:
    hour = f"time >= toDateTime64({now} - 3600, 9, 'UTC')"
    return {
        "one series over a day": (
            f"SELECT time, value FROM {DB}.metric_points WHERE tenant = 'default' AND metric_name = 'bench.metric.7' "
            f"AND series_id = {series_id} AND time >= toDateTime64({now} - 86400, 9, 'UTC') ORDER BY time"),
        "service rate and error ratio, 1 h": (
            "SELECT toStartOfMinute(time) AS minute, sumIf(value, metric_name = 'apm.requests') / 60 AS rate, "
            "sumIf(value, metric_name = 'apm.errors') / nullIf(sumIf(value, metric_name = 'apm.requests'), 0) AS ratio "
            f"FROM {DB}.metric_points WHERE tenant = 'default' AND metric_name IN ('apm.requests', 'apm.errors') "
            f"AND service_name = 'svc-3' AND {hour} GROUP BY minute ORDER BY minute"),
        "top 10 hosts by a metric, 1 h": (
            f"SELECT attributes['host'] AS host, avg(value) AS mean FROM {DB}.metric_points "
            f"WHERE tenant = 'default' AND metric_name = 'bench.metric.7' AND {hour} "
            "GROUP BY host ORDER BY mean DESC LIMIT 10"),
        # A day of one metric: every point's labels read, where the hour above reads few.
        "top 10 hosts by a metric, 1 day": (
            f"SELECT attributes['host'] AS host, avg(value) AS mean FROM {DB}.metric_points "
            f"WHERE tenant = 'default' AND metric_name = 'bench.metric.7' AND time >= toDateTime64({now} - 86400, 9, 'UTC') "
            "GROUP BY host ORDER BY mean DESC LIMIT 10"),
        "p99 from histogram buckets, 1 h": (
            "SELECT bounds[arrayFirstIndex(c -> c >= 0.99 * arraySum(counts), arrayCumSum(counts))] AS p99 FROM ("
            "SELECT sumForEach(bucket_counts) AS counts, any(bucket_bounds) AS bounds "
            f"FROM {DB}.metric_points WHERE tenant = 'default' AND metric_name = 'http.server.request.duration' "
            f"AND {hour})"),
    }


def narrow_queries(now: int, series_id: int) -> dict[str, str]:
    """The same questions written for the narrow tables: `samples` or `histogram_points`, and `series` where
    a label is asked for, as README suggests to whom the compatibility of `metric_points` costs too much."""
    out = {label: sql.replace(f"{DB}.metric_points", f"{DB}.samples") for label, sql in queries(now, series_id).items()}
    out["p99 from histogram buckets, 1 h"] = queries(now, series_id)["p99 from histogram buckets, 1 h"].replace(
        f"{DB}.metric_points", f"{DB}.histogram_points")
    # Labels once per series: aggregate the points per series first, then join each series' labels.
    for label, since in (("top 10 hosts by a metric, 1 h", 3600), ("top 10 hosts by a metric, 1 day", 86400)):
        out[label] = (
            "SELECT s.attributes['host'] AS host, sum(p.total) / sum(p.n) AS mean FROM "
            f"(SELECT series_id, sum(value) AS total, count() AS n FROM {DB}.samples WHERE tenant = 'default' "
            f"AND metric_name = 'bench.metric.7' AND time >= toDateTime64({now} - {since}, 9, 'UTC') "
            f"GROUP BY series_id) AS p INNER JOIN (SELECT series_id, attributes FROM {DB}.series FINAL "
            "WHERE tenant = 'default' AND metric_name = 'bench.metric.7') AS s USING (series_id) "
            "GROUP BY host ORDER BY mean DESC LIMIT 10")
    return out


def run(store: EmbeddedStore, series_id: int, variants: dict[str, Callable[[int, int], dict[str, str]]]
        ) -> dict[str, dict[str, tuple[bytes, float]]]:
    """Per variant, each query's answer and median seconds over 31 runs. The variants take turns, query
    by query: a query takes a few ms, and what else the machine does moves such times more than the
    layouts do, so all see the same moments."""
    now = int(time.time()) // 600 * 600
    sqls = {name: make(now, series_id) for name, make in variants.items()}
    spent: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    answers: dict[str, dict[str, bytes]] = {name: {} for name in variants}
    for _ in range(31):
        for label in sqls[next(iter(sqls))]:
            for name in variants:
                t = time.perf_counter()
                answers[name][label] = store.query(sqls[name][label], "CSV")
                spent[name].setdefault(label, []).append(time.perf_counter() - t)
    return {name: {label: (answers[name][label], statistics.median(times)) for label, times in spent[name].items()}
            for name in variants}


def _old_layout(now: int, series_id: int) -> dict[str, str]:
    return {label: sql.replace(f"{DB}.", f"{OLD_DB}.") for label, sql in queries(now, series_id).items()}


def disk_bytes(store: EmbeddedStore, database: str, tables: tuple[str, ...]) -> int:
    names = ", ".join(f"'{t}'" for t in tables)
    return int(store.execute(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{database}' "
                             f"AND table IN ({names}) AND active").strip())


def keep_old_layout(store: EmbeddedStore) -> None:
    """The wide table's parts, hard-linked into database `OLD_DB` before the store is migrated."""
    store.execute(f"CREATE DATABASE IF NOT EXISTS {OLD_DB}")
    store.execute(f"CREATE TABLE {OLD_DB}.metric_points AS {DB}.metric_points")
    store.execute(f"ALTER TABLE {OLD_DB}.metric_points ATTACH PARTITION ALL FROM {DB}.metric_points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--step", type=int, default=600, help="seconds between a gauge series' points")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore("default", DB, Path(tmp))
        store.migrate(6)
        started = time.perf_counter()
        points = fill(store, args.series, args.step)
        print(f"filled {points:,} points in {time.perf_counter() - started:.0f}s "
              f"({args.series:,} gauge series every {args.step}s over a day, RED and histogram series)")
        series_id = _a_series_id(store)
        keep_old_layout(store)
        started = time.perf_counter()
        store.migrate()
        print(f"migrated to the current layout in {time.perf_counter() - started:.0f}s")
        stored = tuple(t.name for t in LAYOUT_TABLES) + ("series",)
        for table in stored:
            store.execute(f"OPTIMIZE TABLE {DB}.{table} FINAL")
        timed = run(store, series_id, {"old": _old_layout, "new": queries, "narrow": narrow_queries})
        old_bytes, new_bytes = disk_bytes(store, OLD_DB, ("metric_points",)), disk_bytes(store, DB, stored)
        print(f"{'':38s} {'old layout':>12s} {'metric_points':>14s} {'new/old':>8s} {'narrow tables':>14s} "
              f"{'narrow/old':>10s}  same answers")
        print(f"{'bytes on disk per point':38s} {old_bytes / points:12.1f} {new_bytes / points:14.1f}"
              f" {new_bytes / old_bytes:8.2f}")
        for label, (answer, spent) in timed["old"].items():
            (new_answer, new_spent), (narrow_answer, narrow_spent) = timed["new"][label], timed["narrow"][label]
            same = same_answer(answer, new_answer) and same_answer(answer, narrow_answer)
            print(f"{label:38s} {spent * 1000:9.1f} ms {new_spent * 1000:11.1f} ms {new_spent / spent:8.2f} "
                  f"{narrow_spent * 1000:11.1f} ms {narrow_spent / spent:10.2f}  "
                  f"{'yes' if same else 'NO'} ({len(answer.splitlines())} rows)")
        store.close()


def same_answer(old: bytes, new: bytes) -> bool:
    """The same rows and fields, numbers equal to 12 significant digits: an average over a million
    floats is summed in whatever order the threads finish, which moves its last digits."""
    old_rows, new_rows = (list(csv.reader(io.StringIO(a.decode()))) for a in (old, new))
    if [len(r) for r in old_rows] != [len(r) for r in new_rows]:
        return False
    return all(_same_field(a, b) for x, y in zip(old_rows, new_rows) for a, b in zip(x, y))


def _same_field(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)


def _a_series_id(store: EmbeddedStore) -> int:
    return int(store.execute(f"SELECT any(series_id) FROM {DB}.metric_points WHERE metric_name = 'bench.metric.7'").strip())


if __name__ == "__main__":
    main()
