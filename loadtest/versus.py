"""The gateway and VictoriaMetrics side by side, one after the other, with the same remote-write payloads.

    python -m loadtest.versus                         # 150 requests x 2000 samples over 100k series
    python -m loadtest.versus --series 20000 --requests 60

Both get the same pre-encoded snappy WriteRequests (10 labels per series,
every request bringing series not seen before until all `--series` exist)
from the same concurrent senders. The clock stops when every sample is
stored: for the gateway, counted in the store; for VictoriaMetrics, when
`vm_rows_added_to_storage_total` has counted them all. CPU is the server
process's own. Then the gateway alone takes OTLP/gRPC requests of the same
shape (2000 points, 10 attributes, the same number of series), for the figure
beside them. Needs the Debian package `victoria-metrics`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from loadtest import AS_SHIPPED
from loadtest.otlp_load import grpc_load
from loadtest.payloads import metrics_requests
from loadtest.prometheus import send_all, write_requests
from loadtest.run import Sampler, count
from tests.gateway_process import GatewayProcess, free_port


def report(label: str, items: int, seconds: float, cpu: float, peak_rss: int) -> dict:
    figures = {"rate": items / seconds, "cpu_per_million": cpu / items * 1e6}
    print(f"{label:38s} {figures['rate']:>12,.0f} /s  {figures['cpu_per_million']:6.2f} CPU-s per million  "
          f"({items:,} stored in {seconds:.2f}s, peak RSS {peak_rss / 2**20:,.0f} MiB)")
    return figures


def until_stored(label: str, sampler: Sampler, load, stored, items: int) -> dict:
    """Run `load`, then wait until `stored()` counts every item; report rate and CPU."""
    cpu0, started = sampler.cpu(), time.perf_counter()
    asyncio.run(load)
    while stored() < items and time.perf_counter() - started < 600:
        time.sleep(0.05)
    return report(label, items, time.perf_counter() - started, sampler.cpu() - cpu0, sampler.peak)


def on_gateway(label: str, load, items: int) -> dict:
    """A fresh gateway as shipped; `load(gateway)` makes the coroutine that sends to it."""
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp), AS_SHIPPED).start()
        sampler = Sampler(gateway.proc.pid)
        try:
            return until_stored(label, sampler, load(gateway), lambda: count(gateway, "metric_points"), items)
        finally:
            sampler.stop()
            gateway.stop()


def gateway_remote_write(bodies: list[bytes], samples: int, concurrency: int) -> dict:
    return on_gateway("gateway: remote write",
                      lambda gw: send_all(gw.http_url + "/api/v1/write", bodies, concurrency), samples)


def gateway_otlp(series: int, requests: int, concurrency: int) -> dict:
    payloads = metrics_requests(requests, 2000, series)
    return on_gateway("gateway: OTLP/gRPC (same shape)",
                      lambda gw: grpc_load(gw.grpc_endpoint, payloads, concurrency), requests * 2000)


def rows_added(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("vm_rows_added_to_storage_total"):
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def victoria_metrics(bodies: list[bytes], samples: int, concurrency: int) -> dict:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port}",
                                 "-retentionPeriod=100y", "-loggerLevel=ERROR"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = Sampler(proc.pid)
        try:
            _wait_healthy(port)
            return until_stored("VictoriaMetrics: remote write", sampler,
                                send_all(f"http://127.0.0.1:{port}/api/v1/write", bodies, concurrency),
                                lambda: rows_added(port), samples)
        finally:
            sampler.stop()
            proc.terminate()
            proc.wait(30)


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("VictoriaMetrics did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="requests of 2000 samples")
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    bodies = write_requests(args.requests, 2000, args.series)
    samples = args.requests * 2000
    ours = gateway_remote_write(bodies, samples, args.concurrency)
    theirs = victoria_metrics(bodies, samples, args.concurrency)
    print(f"{'ratio (gateway / VictoriaMetrics)':38s} {ours['rate'] / theirs['rate']:>12.2f} x rate  "
          f"{ours['cpu_per_million'] / theirs['cpu_per_million']:6.1f} x CPU per sample")
    gateway_otlp(args.series, args.requests, args.concurrency)


if __name__ == "__main__":
    main()
