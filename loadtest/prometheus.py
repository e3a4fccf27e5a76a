"""Prometheus ingest benchmark: remote write samples/s, and scraping N targets x S series.

    python -m loadtest.prometheus
    python -m loadtest.prometheus --targets 50 --series 1000 --interval 1 --duration 20

Remote write: pre-encoded snappy WriteRequests (2000 samples each, 10 labels
per series, series repeating as from a real Prometheus) from concurrent
senders; the clock stops when every sample is stored. Scraping: a local
server exposes `--targets` endpoints of `--series` series each; the gateway
scrapes them every `--interval` seconds for `--duration` seconds, and the
script prints the samples stored per second against the offered rate.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import cramjam
from aiohttp import web

from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
from loadtest.run import Sampler, count
from loadtest import AS_SHIPPED
from tests.gateway_process import GatewayProcess, deep_merge, free_port


def write_requests(requests: int, samples_per_request: int, series: int) -> list[bytes]:
    now_ms = time.time_ns() // 1_000_000 - 600_000
    out, serial = [], 0
    for _ in range(requests):
        request = WriteRequest()
        for _ in range(samples_per_request):
            s = serial % series
            ts = request.timeseries.add()
            ts.labels.append(Label(name=b"__name__", value=f"bench_metric_{s % 50}".encode()).SerializeToString())
            for i in range(9):
                ts.labels.append(Label(name=f"label_{i}".encode(), value=f"value-{i}-{s}".encode()).SerializeToString())
            ts.samples.add(value=float(serial), timestamp=now_ms + serial)
            serial += 1
        out.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return out


async def send_all(url: str, bodies: list[bytes], concurrency: int) -> int:
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    queue, failures = list(bodies), 0
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            nonlocal failures
            while queue:
                async with session.post(url, data=queue.pop(), headers=headers) as response:
                    failures += response.status != 204
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def remote_write(args) -> None:
    bodies = write_requests(args.requests, 2000, args.rw_series)
    samples = len(bodies) * 2000
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp), AS_SHIPPED).start()
        sampler = Sampler(gateway.proc.pid)
        try:
            cpu0, started = sampler.cpu(), time.perf_counter()
            failures = asyncio.run(send_all(gateway.http_url + "/api/v1/write", bodies, args.concurrency))
            while count(gateway, "metric_points") < samples and time.perf_counter() - started < 300:
                time.sleep(0.05)
            seconds, cpu = time.perf_counter() - started, sampler.cpu() - cpu0
            print(f"{'remote write (samples)':34s} {samples / seconds:>12,.0f} /s  {cpu / samples * 1e6:6.2f} CPU-s per million  "
                  f"({samples:,} stored in {seconds:.2f}s, {failures} failed requests, peak RSS {sampler.peak / 2**20:,.0f} MiB)")
        finally:
            sampler.stop()
            gateway.stop()


class Exporters:
    """`targets` endpoints, each exposing `series` gauge series, on one local server."""

    def __init__(self, targets: int, series: int) -> None:
        self.port = free_port()
        self.bodies = [
            "# TYPE bench_value gauge\n" + "".join(f'bench_value{{target="{t}",series="{s}"}} {s}\n' for s in range(series))
            for t in range(targets)
        ]
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/t/{n}", lambda request: web.Response(text=self.bodies[int(request.match_info["n"])]))
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        loop.run_forever()


def scraping(args) -> None:
    exporters = Exporters(args.targets, args.series)
    targets = [{"url": f"http://127.0.0.1:{exporters.port}/t/{t}", "job": f"bench{t}"} for t in range(args.targets)]
    offered = args.targets * args.series / args.interval
    with tempfile.TemporaryDirectory() as tmp:
        config = {"log_level": "warning", "pollers": {"scrape": {
            "interval": f"{args.interval}s", "timeout": f"{args.interval * 0.9}s", "targets": targets}}}
        gateway = GatewayProcess(Path(tmp), deep_merge(AS_SHIPPED, config)).start()
        sampler = Sampler(gateway.proc.pid)
        try:
            time.sleep(args.interval * 2)  # let every target's loop start
            before, cpu0 = count(gateway, "metric_points"), sampler.cpu()
            time.sleep(args.duration)
            stored, cpu = count(gateway, "metric_points") - before, sampler.cpu() - cpu0
            durations = gateway.rows("SELECT quantile(0.5)(value) AS p50, max(value) AS mx FROM telemetry.metric_points "
                                     "WHERE metric_name = 'scrape_duration_seconds'")[0]
            print(f"{'scrape ' + str(args.targets) + ' x ' + str(args.series) + ' @ ' + str(args.interval) + 's':34s} "
                  f"{stored / args.duration:>12,.0f} /s  {cpu / max(stored, 1) * 1e6:6.2f} CPU-s per million  "
                  f"(offered {offered:,.0f}/s, scrape duration p50 {durations['p50']:.3f}s max {durations['mx']:.3f}s, "
                  f"peak RSS {sampler.peak / 2**20:,.0f} MiB)")
        finally:
            sampler.stop()
            gateway.stop()


def parsing() -> None:
    """The exposition parser alone, on pages recorded from real exporters (best of 5 runs of 20)."""
    from telemetry_gateway.adapters.prometheus.exposition import parse_exposition

    pages = Path(__file__).resolve().parents[1] / "tests" / "adapters" / "prometheus" / "testdata" / "pages"
    for page in ("node_exporter.txt", "prometheus.txt"):
        body = (pages / page).read_text()
        samples = len(parse_exposition(body, 0).samples)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(20):
                parse_exposition(body, 0)
            best = min(best, (time.perf_counter() - started) / 20)
        print(f"{'parse ' + page:34s} {samples / best:>12,.0f} /s  {best / samples * 1e6:6.2f} us per sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="remote-write requests of 2000 samples")
    parser.add_argument("--rw-series", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    remote_write(args)
    scraping(args)
    parsing()


if __name__ == "__main__":
    main()
