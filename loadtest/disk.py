"""Bytes on disk per point: counters scraped every 15 s over a day, in the old and the new layout.

    python -m loadtest.disk                  # 1000 counter series, 10 labels each, a day at 15 s
    python -m loadtest.disk --series 200

Builds the points as the scrape poller hands them to the store (one batch per
target and scrape, 100 series per target, the batch id made at the scrape's
receive time), inserts them through `RegionStore.insert_group` in two-hour
groups, merges everything (`OPTIMIZE ... FINAL`) and prints bytes on disk
per point: all tables of the narrow layout together (samples, series,
metric_batches), and the wide `metric_points` table of schema version 6 on
the same points. Target: at most 15 bytes per point.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from telemetry_gateway.gateway.batch import batch_id_at
from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.schema import POINTS, conform
from telemetry_gateway.schema.layout import LAYOUT_TABLES

STEP_S = 15
PER_TARGET = 100
LABELS = ("job", "instance", "cpu", "mode", "device", "zone", "rack", "team", "env", "series")


def day_of_points(series: int, seed: int = 7):
    """Yield POINTS tables of two hours each: per scrape, one batch per target."""
    rng = np.random.default_rng(seed)
    targets = series // PER_TARGET
    ids = rng.integers(1, 2**63, series, dtype=np.uint64)
    names = np.array([f"node_metric_{i % 25}_total" for i in range(series)], dtype=object)
    attrs = pa.array([[(k, f"{k}-{(i * (j + 3)) % (7 + j * 5)}") for j, k in enumerate(LABELS[:-1])]
                      + [("series", str(i))] for i in range(series)], pa.map_(pa.string(), pa.string()))
    # Half count events (integers), half accumulate seconds (two decimals), as node_exporter's counters do.
    rates = rng.uniform(0, 40, series)
    integral = np.arange(series) % 2 == 0
    values = np.zeros(series)
    start = int(time.time()) // 86400 * 86400 - 86400
    scrapes = 86400 // STEP_S
    chunk = []
    for step in range(scrapes):
        increments = rates * rng.uniform(0.7, 1.3, series) * STEP_S / 10
        values = values + np.where(integral, np.round(increments), np.round(increments, 2))
        for target in range(targets):
            rows = slice(target * PER_TARGET, (target + 1) * PER_TARGET)
            scraped_ms = (start + step * STEP_S) * 1000 + target * 37 + int(rng.integers(0, 4))
            received_us = scraped_ms * 1000 + int(rng.integers(1500, 9000))
            chunk.append(_batch(ids[rows], names[rows], attrs[rows.start:rows.stop], values[rows].copy(),
                                scraped_ms * 1_000_000, start * 1_000_000_000, received_us, target))
        if (step + 1) % (7200 // STEP_S) == 0 or step == scrapes - 1:
            yield pa.concat_tables(chunk)
            chunk = []


def _batch(ids, names, attrs, values, time_ns, start_ns, received_us, target) -> pa.Table:
    n = len(ids)
    return conform(POINTS, pa.table({
        "time": pa.array(np.full(n, time_ns), pa.timestamp("ns", tz="UTC")),
        "start_time": pa.array(np.full(n, start_ns), pa.timestamp("ns", tz="UTC")),
        "metric_name": pa.array(names, pa.string()),
        "kind": pa.array(["sum"] * n), "temporality": pa.array(["cumulative"] * n),
        "is_monotonic": pa.array(np.ones(n, bool)),
        "value": pa.array(values),
        "received_time": pa.array(np.full(n, received_us * 1000), pa.timestamp("ns", tz="UTC")),
        "service_name": pa.array(["node"] * n),
        "resource_attributes": pa.array([[("service.name", "node"), ("host.name", f"host-{target}")]] * n,
                                        pa.map_(pa.string(), pa.string())),
        "attributes": attrs,
        "source_kind": pa.array(["scrape"] * n), "source_id": pa.array([f"scrape:http://host-{target}:9100/metrics"] * n),
        "tenant": pa.array(["default"] * n), "region": pa.array(["default"] * n),
        "batch_id": pa.array([batch_id_at(received_us)] * n),
        "series_id": pa.array(ids, pa.uint64()),
    }))


def bytes_of(store: EmbeddedStore, tables: list[str]) -> int:
    names = ", ".join(f"'{t}'" for t in tables)
    for table in tables:
        store.execute(f"OPTIMIZE TABLE `{store.database}`.`{table}` FINAL")
    out = store.execute(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{store.database}' "
                        f"AND table IN ({names}) AND active")
    return int(out.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000, help="counter series (a multiple of 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        new = EmbeddedStore("default", "narrow", Path(tmp))
        new.open()
        old = EmbeddedStore("default", "wide", Path(tmp))
        old.migrate(6)
        points = 0
        started = time.perf_counter()
        for i, group in enumerate(day_of_points(args.series)):
            new.insert_group(POINTS, group, f"{i:032x}")
            old.insert(POINTS, group, f"{i:032x}")
            points += group.num_rows
        print(f"{points:,} points ({args.series:,} counters every {STEP_S}s over a day) "
              f"inserted in {time.perf_counter() - started:.0f}s")
        narrow = bytes_of(new, [t.name for t in LAYOUT_TABLES] + ["series"])
        samples = bytes_of(new, ["samples"])
        wide = bytes_of(old, ["metric_points"])
        print(f"{'new layout, all tables':34s} {narrow / points:6.1f} bytes per point (target 15)")
        print(f"{'  of which samples':34s} {samples / points:6.1f} bytes per point")
        print(f"{'old layout (metric_points table)':34s} {wide / points:6.1f} bytes per point")
        columns = new.execute(
            "SELECT column, round(sum(column_data_compressed_bytes) / sum(rows), 2) FROM system.parts_columns "
            "WHERE database = 'narrow' AND table = 'samples' AND active GROUP BY column ORDER BY 2 DESC", fmt="TSV")
        print("samples, bytes per point by column: " + ", ".join(
            f"{line.split(chr(9))[0]} {line.split(chr(9))[1]}" for line in columns.decode().splitlines()))
        new.close()


if __name__ == "__main__":
    main()
