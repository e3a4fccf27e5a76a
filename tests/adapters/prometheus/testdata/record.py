"""Record real remote-write requests from a real Prometheus scraping a real node_exporter.

Run `python tests/adapters/prometheus/testdata/record.py` (needs the Debian
packages prometheus and prometheus-node-exporter). It keeps the first request
with samples and the first with metadata, as Prometheus sent them (snappy).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[3]))

import cramjam  # noqa: E402

from telemetry_gateway.adapters.prometheus.prompb import WriteRequest  # noqa: E402
from tests.gateway_process import free_port  # noqa: E402
from tests.peers import node_exporter, prometheus  # noqa: E402

bodies: list[bytes] = []


class Capture(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        exporter, exporter_port = node_exporter(Path(tmp))
        prom, _ = prometheus(Path(tmp), {"node": [f"127.0.0.1:{exporter_port}"]}, f"http://127.0.0.1:{port}/api/v1/write")
        samples = metadata = None
        deadline = time.monotonic() + 60
        while (samples is None or metadata is None) and time.monotonic() < deadline:
            for body in list(bodies):
                request = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
                if request.timeseries and samples is None:
                    samples = body
                if request.metadata and metadata is None:
                    metadata = body
            time.sleep(0.5)
        prom.stop()
        exporter.stop()
    server.shutdown()
    (HERE / "node_exporter_samples.snappy").write_bytes(samples)
    (HERE / "node_exporter_metadata.snappy").write_bytes(metadata)
    print(len(samples), len(metadata))


if __name__ == "__main__":
    main()
