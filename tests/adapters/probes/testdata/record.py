"""Record real exporter output: blackbox_exporter /probe (http and tcp) and snmp_exporter /snmp.

Run `python tests/adapters/probes/testdata/record.py` (Debian packages
prometheus-blackbox-exporter, prometheus-snmp-exporter, snmpd). It probes a
local HTTP server it starts, and walks a local snmpd.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[3]))

from tests.gateway_process import free_port  # noqa: E402
from tests.peers import blackbox_exporter, snmp_agent, snmp_exporter  # noqa: E402


class Ok(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def main() -> None:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        blackbox, bb = blackbox_exporter(workdir)
        agent, agent_port = snmp_agent(workdir)
        snmp, snmp_port = snmp_exporter(workdir)
        time.sleep(1)
        try:
            (HERE / "blackbox_http.prom").write_bytes(
                fetch(f"http://127.0.0.1:{bb}/probe?module=http_2xx&target=http://127.0.0.1:{port}/"))
            (HERE / "blackbox_tcp.prom").write_bytes(
                fetch(f"http://127.0.0.1:{bb}/probe?module=tcp_connect&target=127.0.0.1:{port}"))
            (HERE / "snmp_if_mib.prom").write_bytes(
                fetch(f"http://127.0.0.1:{snmp_port}/snmp?target=127.0.0.1:{agent_port}&module=if_mib"))
        finally:
            blackbox.stop()
            snmp.stop()
            agent.terminate()
    server.shutdown()


if __name__ == "__main__":
    main()
