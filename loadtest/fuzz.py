"""Coverage-guided fuzzing of every decoder with atheris (libFuzzer for Python).

    .venv/bin/python -m loadtest.fuzz --runs 1000000            # every target, one after another
    .venv/bin/python -m loadtest.fuzz --runs 1000000 --jobs 2 otlp_metrics zipkin

Each target feeds bytes through what a request meets in the gateway: the
receiver's body decoding (gzip, snappy, OTLP/JSON to protobuf) and then the
pipeline's decode and adapt step (`IngestPipeline._adapt`, without its
catch-all, so an adapter bug is a crash here). The gateway's own refusals
(`GatewayError`) are the expected outcome of bad input; any other exception is
a crash, and libFuzzer writes the input to `crash-*` in the work directory.

`otlp_metrics_native` and `remote_write_native` are differential: every input
the protobuf parser takes must give the same rows and refusals through the
compiled walker as through the Python walk (a difference is a crash).

Seeds come from the recorded fixtures under tests/ and a few built requests.
Prints, per target, the inputs run and the crashes found.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("otlp_metrics", "otlp_logs", "otlp_traces", "otlp_metrics_json", "otlp_logs_json", "otlp_traces_json",
           "remote_write", "zipkin", "syslog", "jsonlines", "gzip", "exposition", "otlp_metrics_native",
           "remote_write_native")


def seeds(target: str) -> list[bytes]:
    data = ROOT / "tests" / "adapters"
    if target == "otlp_metrics_native":
        from tests.adapters.otlp.test_native import HOSTILE

        return [(data / "otlp/testdata/sdk_metrics.binpb").read_bytes(), *HOSTILE.values()]
    if target == "remote_write_native":
        import cramjam

        from tests.adapters.prometheus.test_native_remote_write import HOSTILE as RW_HOSTILE

        recorded = [bytes(cramjam.snappy.decompress_raw((data / f"prometheus/testdata/node_exporter_{n}.snappy")
                                                        .read_bytes())) for n in ("samples", "metadata")]
        return [*recorded, *RW_HOSTILE.values()]
    if target.startswith("otlp_metrics"):
        raw = [(data / "otlp/testdata/sdk_metrics.binpb").read_bytes()]
    elif target.startswith("otlp_logs"):
        raw = [(data / "otlp/testdata/sdk_logs.binpb").read_bytes()]
    elif target.startswith("otlp_traces"):
        raw = [_traces_request()]
    elif target == "remote_write":
        return [(data / f"prometheus/testdata/node_exporter_{n}.snappy").read_bytes() for n in ("samples", "metadata")]
    elif target == "zipkin":
        return [b'[{"traceId":"5af7183fb1d4cf5f","id":"1","kind":"SERVER","name":"get /pay","timestamp":1800000000000000,'
                b'"duration":150000,"localEndpoint":{"serviceName":"shop"},"tags":{"http.route":"/pay","http.status_code":"503"}}]']
    elif target == "syslog":
        stream = (data / "logs/testdata/rsyslog_rfc3164_newline.bin").read_bytes()
        return stream.splitlines()[:8] + [b"<165>1 2026-11-30T09:01:47.94Z host app 1 ID [ex a=\"b\"] msg"]
    elif target == "jsonlines":
        return [b'{"ts":"2026-11-30T09:00:00Z","msg":"hi","level":"warn","service":"s","k":{"a":[1,2]}}\n{"time":1.7e9}']
    elif target == "gzip":
        return [gzip.compress(b"hello" * 100), gzip.compress(b"a") + gzip.compress(b"b")]
    else:
        return [(data / f"probes/testdata/{n}.prom").read_bytes() for n in ("blackbox_http", "snmp_if_mib")]
    if target.endswith("_json"):
        return [_to_json(target.removesuffix("_json"), r) for r in raw]
    return raw


def _traces_request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "shop"
    span = rs.scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /x", kind=2,
                                          start_time_unix_nano=time.time_ns() - 10**6, end_time_unix_nano=time.time_ns())
    span.attributes.add(key="http.route").value.string_value = "/x"
    return request.SerializeToString()


def _to_json(target: str, raw: bytes) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    cls = {"otlp_metrics": ExportMetricsServiceRequest, "otlp_logs": ExportLogsServiceRequest,
           "otlp_traces": ExportTraceServiceRequest}[target]
    return json_format.MessageToJson(cls.FromString(raw)).encode()


def build_target(name: str):
    """The function libFuzzer calls with each input."""
    from telemetry_gateway.gateway.config import GatewayConfig
    from telemetry_gateway.gateway.errors import GatewayError
    from telemetry_gateway.gateway.access import Admission
    from telemetry_gateway.gateway.batch import Caller
    from telemetry_gateway.gateway.components import FORMATS
    from telemetry_gateway.gateway.pipeline import IngestPipeline
    from telemetry_gateway.gateway.components.scrape.poller import ScrapeFailed, parse
    from telemetry_gateway.gateway.receivers.body import decompress
    from telemetry_gateway.gateway.components.otlp.json import json_to_protobuf
    from telemetry_gateway.gateway.components.remote_write.route import decode_body

    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    config = GatewayConfig.model_validate({
        "store": {"path": str(work)}, "apm": {"store_spans": True},
        "log_metrics": [{"name": "log.records", "preset": "severity_by_service"},
                        {"name": "http.server.requests", "preset": "nginx_access"}],
    })
    pipeline = IngestPipeline(config, stores=None, telemetry=_telemetry())
    fmt = FORMATS.get(name.removesuffix("_json"))
    signal = fmt.signal if fmt else name

    def adapt(payload) -> None:
        # Decode to route, as a request would go, but nothing is kept.
        pipeline._process(fmt, payload, Admission(Caller("fuzz"), "default", None), "fuzz")

    def one(data: bytes) -> None:
        try:
            if name.endswith("_json"):
                adapt(json_to_protobuf(signal, data))
            elif name == "remote_write":
                adapt(decode_body(data, "snappy", 32 << 20))
            elif name == "syslog":
                adapt([data])
            elif name == "gzip":
                decompress(data, "gzip", 1 << 20)
            elif name == "exposition":
                parse(data.decode("utf-8", "replace"), "text/plain", 1_800_000_000_000)
            elif name == "otlp_metrics_native":
                _same_through_both_walks(data)
            elif name == "remote_write_native":
                _same_remote_write(data)
            else:
                adapt(data)
        except (GatewayError, ScrapeFailed):
            pass  # refused with the gateway's own error: what bad input should get

    return one


def _same_through_both_walks(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    from telemetry_gateway.adapters.otlp import metrics
    from tests.adapters.otlp.test_native import assert_same

    try:
        metrics.decode_request(data)
    except DecodeError:
        try:
            metrics.decode_received(data)  # the gateway's decoding must refuse it too
        except DecodeError:
            return
        raise AssertionError("the full parse refuses this request, the shallow parse and the walker took it")
    if metrics.decode_received(data).walked is not None:
        assert_same(data)


def _same_remote_write(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    from telemetry_gateway.adapters.prometheus import remote_write
    from tests.adapters.prometheus.test_native_remote_write import Tenant

    try:
        remote_write.decode_request(data)
    except DecodeError:
        try:
            remote_write.native_write_request(data)
        except ValueError:
            pass
        return
    walked = remote_write._walk(data)
    if walked is None:
        return
    if len(walked.timestamp) and abs(walked.timestamp).max() > remote_write._MAX_MS:
        return  # a timestamp past 2262: the compiled walk hands such requests to the Python walk by design
    Tenant().assert_same(data)


def _telemetry():
    from telemetry_gateway.gateway.self_metrics import SelfMetrics

    return SelfMetrics()


def run_one(name: str, runs: int, workdir: Path) -> tuple[int, int]:
    """Fuzz one target in a child process; (inputs run, crashes)."""
    corpus = workdir / name / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    log = workdir / name / "fuzz.log"
    with open(log, "wb") as out:
        code = subprocess.call([sys.executable, "-m", "loadtest.fuzz", "--child", name, f"-runs={runs}",
                                "-max_len=65536", "-rss_limit_mb=4096", f"-artifact_prefix={workdir / name}/", str(corpus)],
                               cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    done = [line for line in text.splitlines() if line.startswith("Done ")]
    ran = int(done[-1].split()[1]) if done else 0
    crashes = len(list((workdir / name).glob("crash-*"))) + (0 if code == 0 else 1 if not done else 0)
    if crashes:
        print(text[-4000:], file=sys.stderr)
    return ran, crashes


def child(name: str, args: list[str]) -> None:
    import atheris

    # Everything a target reaches, imported inside the block so atheris instruments it for coverage.
    with atheris.instrument_imports(include=["adapters", "gateway", "schema"]):
        import telemetry_gateway.gateway.pipeline  # noqa: F401 - and through it every adapter
        import telemetry_gateway.gateway.components.scrape.poller  # noqa: F401
        import telemetry_gateway.gateway.receivers.body  # noqa: F401
        import telemetry_gateway.gateway.components.otlp.json  # noqa: F401
        import telemetry_gateway.gateway.components.remote_write.route  # noqa: F401
    one = build_target(name)
    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument("--runs", type=int, default=10_000, help="inputs per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--workdir", type=Path, default=None, help="where corpora, logs and crash inputs go")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gateway-fuzz-"))
    targets = args.targets or list(TARGETS)
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(targets, pool.map(lambda t: run_one(t, args.runs, workdir), targets)))
    print(f"{'target':<20} {'inputs':>10} {'crashes':>8}")
    for name, (ran, crashes) in results.items():
        print(f"{name:<20} {ran:>10} {crashes:>8}")
    print(f"work directory: {workdir} ({time.monotonic() - started:.0f}s)")
    sys.exit(1 if any(c for _, c in results.values()) else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
