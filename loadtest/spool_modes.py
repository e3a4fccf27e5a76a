"""Spool benchmark: end-to-end throughput per durability mode, and the spool's own write rate.

    python -m loadtest.spool_modes
    python -m loadtest.spool_modes --requests 100 --concurrency 8

For each mode (spool off: answered after the insert; spool with fsync per
interval; spool with fsync per batch) it starts a fresh gateway and drives
OTLP/gRPC metrics at it. Then it appends the same batches straight to a spool
on this disk, in-process, to show what the spool alone sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psutil

from telemetry_gateway.adapters.base import AcceptWindow
from telemetry_gateway.gateway.batch import Batch, Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import POINTS
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.gateway.spool.spool import Spool
from loadtest.otlp_load import grpc_load
from loadtest.payloads import metrics_requests
from loadtest.run import Sampler, count
from loadtest import AS_SHIPPED
from tests.gateway_process import GatewayProcess, deep_merge

MODES = {
    "spool off (ack after insert)": {"spool": {"enabled": False}, "store": {"batch": {"max_delay": "200ms"}}},
    "spool, fsync per interval (1s)": {"spool": {"fsync": "interval", "fsync_interval": "1s"}},
    "spool, fsync per batch": {"spool": {"fsync": "batch"}},
}


def _count(gateway: GatewayProcess) -> int:
    return count(gateway, "metric_points")


def end_to_end(payloads: list[bytes], per_request: int, concurrency: int) -> None:
    """Acknowledged rate, and the rate until every point is in the store (what can be sustained)."""
    expected = per_request * len(payloads)
    for label, overrides in MODES.items():
        with tempfile.TemporaryDirectory() as tmp:
            gateway = GatewayProcess(Path(tmp), deep_merge(AS_SHIPPED, overrides)).start()
            sampler = Sampler(gateway.proc.pid)
            try:
                cpu0, started = sampler.cpu(), time.perf_counter()
                result = asyncio.run(grpc_load(gateway.grpc_endpoint, payloads, concurrency))
                acked_s = time.perf_counter() - started
                deadline = time.monotonic() + 300
                while _count(gateway) < expected and time.monotonic() < deadline:
                    time.sleep(0.05)
                stored_s, cpu = time.perf_counter() - started, sampler.cpu() - cpu0
                print(f"{label:34s} acked {expected / acked_s:>9,.0f}/s  stored {expected / stored_s:>9,.0f}/s  "
                      f"{cpu / expected * 1e6:5.2f} CPU-s per million  peak RSS {sampler.peak / 2**20:,.0f} MiB  "
                      f"({result.failures} failed requests, {_count(gateway):,} of {expected:,} stored)")
            finally:
                sampler.stop()
                gateway.stop()


async def _append_all(spool: Spool, batches: list[Batch], concurrency: int) -> None:
    queue = list(batches)

    async def worker() -> None:
        while queue:
            await spool.append_batch(queue.pop(), lambda _: None)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def spool_alone(payloads: list[bytes], concurrency: int) -> None:
    sets = AttributeSets()
    finalizer = Finalizer(AcceptWindow(max_age_ns=10**18))
    provenance = Provenance("otlp_metrics", "otlp", "bench", Caller("local"), "0" * 32, time.time_ns(), region="default")
    tables = [finalizer.finish_all(metrics_to_arrow(decode_request(p), sets), provenance, POINTS) for p in payloads]
    rows = sum(t.num_rows for t in tables)
    for fsync in ("interval", "batch"):
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            batches = [Batch.local(POINTS, t, f"{i:032x}") for i, t in enumerate(tables)]
            spool = Spool(Path(tmp), fsync=fsync, max_bytes=1 << 40)
            spool.open()

            async def run() -> float:
                spool.start(asyncio.get_running_loop())
                started = time.perf_counter()
                await _append_all(spool, batches, concurrency)
                seconds = time.perf_counter() - started
                await spool.close()
                return seconds

            cpu0 = psutil.Process().cpu_times()
            seconds = asyncio.run(run())
            cpu1 = psutil.Process().cpu_times()
            cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            size = sum(b.size for b in batches)
            print(f"{'spool alone, fsync ' + fsync:34s} {rows / seconds:>12,.0f} rows/s  {len(batches) / seconds:8,.0f} batches/s  "
                  f"{size / seconds / 2**20:6.1f} MiB/s  ({size / rows:.0f} bytes/row on disk, {cpu / rows * 1e6:.2f} CPU-s per million)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--series", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=24)
    args = parser.parse_args()
    payloads = metrics_requests(args.requests, args.points, args.series)
    per_request = args.points // 10 * 10
    print(f"{args.requests} requests x {per_request} points, 10 attributes, {args.concurrency} concurrent senders")
    end_to_end(payloads, per_request, args.concurrency)
    spool_alone(payloads, args.concurrency)


if __name__ == "__main__":
    main()
