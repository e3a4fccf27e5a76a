"""End-to-end ingest benchmark: prints every figure in one run.

    python -m loadtest.run                 # defaults: 2000 requests x 2000 points, 10 attributes
    python -m loadtest.run --requests 100  # quicker
    python -m loadtest.run --policy        # the same with an access policy: tokens, residency, audit

It starts a real gateway on the embedded store (fresh data directory, loopback
ports), drives it with pre-encoded OTLP requests from several concurrent
senders, and reports for OTLP/gRPC and OTLP/HTTP metrics and for OTLP/gRPC
logs: items/s end to end (the clock stops when every acknowledged item is in
the store, not at the last acknowledgement), gateway CPU-seconds per million
items (including the merges of the parts the phase made, which run after it),
and the gateway's peak RSS. The gateway runs with the shipped batching
(`loadtest.AS_SHIPPED`). Then it inserts the same rows from prebuilt
Arrow tables straight into chDB in this process: the store's own ceiling, and
the ratio between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.adapters.base import AcceptWindow
from telemetry_gateway.gateway.batch import Caller, Provenance, new_batch_id
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import POINTS
from telemetry_gateway.schema.layout import LAYOUT_TABLES as KIND_TABLES_OF_POINTS
from loadtest.otlp_load import LOGS_METHOD, grpc_load, http_load
from loadtest.payloads import logs_requests, metrics_requests
from loadtest import AS_SHIPPED
from tests.gateway_process import GatewayProcess, deep_merge


class Sampler:
    """Samples a gateway's RSS in the background (with its listener workers', when it has them); keeps
    the peak."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _processes(self) -> list[psutil.Process]:
        return [self.proc, *self.proc.children()]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, sum(p.memory_info().rss for p in self._processes()))
            except psutil.Error:
                return
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU-seconds of the gateway and its workers (a worker restarted meanwhile would be missed)."""
        return sum(t.user + t.system for t in (p.cpu_times() for p in self._processes()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def settle(gateway: GatewayProcess, timeout: float = 120) -> None:
    """Wait for background merges to finish so one phase's merges are not billed to the next.
    A merge starts a moment after the insert that calls for it: idle means none for 1.5 s."""
    deadline, idle = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and idle < 3:
        none = gateway.rows("SELECT toString(count()) AS n FROM system.merges") == [{"n": "0"}]
        idle = idle + 1 if none else 0
        time.sleep(0.5)


def count(gateway: GatewayProcess, table: str) -> int:
    """Rows stored in `table` (for `metric_points`, in its kind tables), from the active parts' row
    counts. `count()` on the view joins every point to its series: about 60 ms of the gateway's CPU
    per call at a million points, which polling every 50 ms billed to the phase it measured."""
    tables = [t.name for t in KIND_TABLES_OF_POINTS] if table == "metric_points" else [table]
    names = ", ".join(f"'{t}'" for t in tables)
    out = gateway.rows("SELECT toString(sum(rows)) AS n FROM system.parts "
                       f"WHERE database = 'telemetry' AND table IN ({names}) AND active")
    return int(out[0]["n"])


def measure(gateway: GatewayProcess, sampler: Sampler, label: str, per_request: int, run, table: str) -> dict:
    """Run one load phase; the clock stops when every acknowledged item is in the store."""
    settle(gateway)
    before = count(gateway, table)
    cpu0, started = sampler.cpu(), time.perf_counter()
    result = asyncio.run(run)
    acknowledged_s = time.perf_counter() - started
    items = per_request * (result.requests - result.failures)
    deadline = time.monotonic() + 300
    while count(gateway, table) < before + items and time.monotonic() < deadline:
        time.sleep(0.05)
    seconds, cpu_stored = time.perf_counter() - started, sampler.cpu() - cpu0
    # The parts this phase made are merged after it; that is part of what its points cost.
    settle(gateway)
    cpu = sampler.cpu() - cpu0
    rate = items / seconds
    figures = {"label": label, "items": items, "seconds": seconds, "rate": rate, "cpu_per_million": cpu / items * 1e6}
    print(f"{label:34s} {rate:>12,.0f} /s  {figures['cpu_per_million']:6.2f} CPU-s per million  "
          f"({items:,} stored in {seconds:.2f}s, acknowledged at {items / acknowledged_s:,.0f}/s, "
          f"{result.failures} failed requests; {cpu_stored / items * 1e6:.2f} CPU-s per million until stored, "
          "the rest merging after)")
    for error in result.errors:
        print(f"    error: {error}")
    return figures


def store_ceiling(payloads: list[bytes], batch_rows: int) -> tuple[float, float]:
    """Rows/s and CPU-s per million storing prebuilt Arrow tables as the writer does (`insert_group`)."""
    from telemetry_gateway.gateway.store.embedded import EmbeddedStore

    sets = AttributeSets()
    finalizer = Finalizer(AcceptWindow(max_age_ns=10**18))
    provenance = Provenance("otlp_metrics", "otlp", "bench", Caller("local"), new_batch_id(), time.time_ns(),
                            region="default")
    tables = [finalizer.finish_all(metrics_to_arrow(decode_request(p), sets), provenance, POINTS) for p in payloads]
    whole = pa.concat_tables(tables)
    batches = [whole.slice(i, batch_rows) for i in range(0, whole.num_rows, batch_rows)]
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore("default", "ceiling", Path(tmp))
        store.open()

        cpu0, t0 = time.process_time(), time.perf_counter()
        for i, batch in enumerate(batches):
            store.insert_group(POINTS, batch, f"{i:032x}")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        store.close()
    return whole.num_rows / seconds, cpu / whole.num_rows * 1e6


def policy_for_load(directory: Path) -> tuple[Path, str]:
    """One tenant in the default region, its sender's token, a rule matching a resource attribute on every
    row (so placement runs per row, as loadtest.access_cost measures), a series budget."""
    import yaml

    from telemetry_gateway.gateway.access import new_token

    token, digest = new_token()
    policy = {"regions": ["default"],
              "tenants": {"load": {"home_region": "default", "limits": {"max_series": 10_000_000}}},
              "residency": [{"name": "german-hosts", "match": {"resource": {"host.country": ["DE"]}},
                             "forbid": ["default"]}],
              "principals": {"loadgen": {"tenants": ["load"], "roles": ["ingest"], "tokens": [{"sha256": digest}]}}}
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 4M points: long enough that the last group's wait for store.batch.max_delay (2 s as shipped)
    # does not decide the rate; 600 requests measured 310-330k/s over gRPC where 2000 measure 460k/s.
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--points", type=int, default=2000, help="data points per request")
    parser.add_argument("--series", type=int, default=20000, help="distinct attribute sets")
    parser.add_argument("--attributes", type=int, default=10, help="attributes per point")
    # 24 senders x 2000 points in flight: about what a Collector's otlp exporter
    # keeps in flight with its defaults (10 consumers x 8192-point batches).
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--connections", type=int, default=1,
                        help="gRPC connections the senders share (a Collector keeps one; listener workers are "
                             "given connections, not requests)")
    parser.add_argument("--log-records", type=int, default=1000, help="log records per request")
    parser.add_argument("--new-series", action="store_true",
                        help="every point a new attribute set, no warm-up: the high-cardinality shape")
    parser.add_argument("--policy", action="store_true",
                        help="run under an access policy: token auth, a residency rule on a resource attribute, "
                             "a series budget and the audit (loadtest.access_cost has the in-process split)")
    parser.add_argument("--override", default="{}", help='gateway config as JSON, e.g. \'{"store": {"batch": {"max_rows": 100000}}}\'')
    args = parser.parse_args()

    if args.new_series:
        args.series = args.requests * args.points
    print(f"building {args.requests} requests x {args.points} points, {args.attributes} attributes, {args.series} series"
          f"{' (all new)' if args.new_series else ''} ...")
    payloads = metrics_requests(args.requests, args.points, args.series, args.attributes)
    if args.new_series:  # the HTTP run gets sets of its own, unseen too
        http_payloads = metrics_requests(args.requests, args.points, args.series, args.attributes, first_series=args.series)
        warmup = []
    else:
        http_payloads = payloads
        warmup = metrics_requests(max(1, args.series // args.points), args.points, args.series, args.attributes)
    logs = logs_requests(args.requests, args.log_records)
    per_request = args.points // 10 * 10

    with tempfile.TemporaryDirectory() as tmp:
        config, token = deep_merge(AS_SHIPPED, json.loads(args.override)), ""
        if args.policy:
            policy_file, token = policy_for_load(Path(tmp))
            config = deep_merge(config, {"policy": {"file": str(policy_file)}})
        gateway = GatewayProcess(Path(tmp), config).start()
        sampler = Sampler(gateway.proc.pid)
        try:
            if warmup:
                asyncio.run(grpc_load(gateway.grpc_endpoint, warmup, 4, token=token))
            rss_idle = psutil.Process(gateway.proc.pid).memory_info().rss
            results = [
                measure(gateway, sampler, "OTLP/gRPC metrics (data points)", per_request,
                        grpc_load(gateway.grpc_endpoint, payloads, args.concurrency, token=token,
                                  connections=args.connections), "metric_points"),
                measure(gateway, sampler, "OTLP/HTTP metrics (data points)", per_request,
                        http_load(gateway.http_url + "/v1/metrics", http_payloads, args.concurrency, token=token),
                        "metric_points"),
                measure(gateway, sampler, "OTLP/gRPC logs (log records)", args.log_records,
                        grpc_load(gateway.grpc_endpoint, logs, args.concurrency, LOGS_METHOD, token=token,
                                  connections=args.connections),
                        "log_records"),
            ]
            stored = gateway.rows("SELECT toString(count()) AS n FROM telemetry.metric_points WHERE service_name = 'loadgen'")
        finally:
            sampler.stop()
            gateway.stop()
    expected = per_request * (len(warmup) + results[0]["items"] // per_request + results[1]["items"] // per_request)
    print(f"{'stored data points':34s} {int(stored[0]['n']):>12,}  (sent {expected:,})")
    print(f"{'gateway RSS idle / peak':34s} {rss_idle / 2**20:>10,.0f} MiB / {sampler.peak / 2**20:,.0f} MiB")
    ceiling, ceiling_cpu = store_ceiling(payloads, 100_000)
    print(f"{'store ceiling (Arrow -> chDB)':34s} {ceiling:>12,.0f} /s  {ceiling_cpu:6.2f} CPU-s per million")
    print(f"{'end to end / store ceiling (gRPC)':34s} {results[0]['rate'] / ceiling:>12.0%}")


if __name__ == "__main__":
    main()
