"""A real gateway process for tests: its own ports, data directory and config."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class GatewayProcess:
    def __init__(self, workdir: Path, overrides: dict | None = None, faults: bool = False,
                 fd_limit: int | None = None) -> None:
        self.workdir = workdir
        self.faults = faults
        self.fd_limit = fd_limit  # RLIMIT_NOFILE (soft and hard) of the gateway process
        self.grpc_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        config = {
            "receivers": {"otlp": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
            }},
            "store": {"path": str(workdir / "data"), "batch": {"max_delay": "50ms", "ingest_log_max_delay": "50ms"}},
            "admin": {"endpoint": f"127.0.0.1:{self.admin_port}"},
            # RED windows are written this long after their last span (30 s as shipped): tests would wait.
            "apm": {"lateness": "300ms"},
        }
        self.config = deep_merge(config, overrides or {})
        otlp = self.config["receivers"]["otlp"]
        self.grpc_port = int(otlp["grpc"]["endpoint"].rsplit(":", 1)[1])
        self.http_port = int(otlp["http"]["endpoint"].rsplit(":", 1)[1])
        self.admin_port = int(self.config["admin"]["endpoint"].rsplit(":", 1)[1])
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.config["receivers"]["otlp"]["http"].get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"{'https' if self.config['admin'].get('tls') else 'http'}://127.0.0.1:{self.admin_port}"

    @property
    def _admin_context(self):
        """The harness reads its own gateway's admin listener: TLS there is checked by the tests that use it."""
        return ssl._create_unverified_context() if self.config["admin"].get("tls") else None

    def start(self, timeout: float = 60) -> GatewayProcess:
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if self.faults:
            env["TELEMETRY_GATEWAY_FAULTS"] = "1"
        limit = self.fd_limit
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry_gateway.gateway.cli", "serve", "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.admin_url + "/readyz", timeout=2, context=self._admin_context) as r:
                    if r.status == 200 and (self.workdir / "data" / "admin.token").exists():
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def token(self) -> str:
        return (self.workdir / "data" / "admin.token").read_text().strip()

    def query_raw(self, sql: str, fmt: str = "JSONEachRow", token: str | None = None, region: str | None = None,
                  headers: dict | None = None) -> bytes:
        request = urllib.request.Request(
            self.admin_url + "/api/v1/sql",
            data=json.dumps({"sql": sql, "format": fmt, "region": region}).encode(),
            headers={"Authorization": f"Bearer {token if token is not None else self.token()}", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=60, context=self._admin_context) as response:
            return response.read()

    def rows(self, sql: str, region: str | None = None) -> list[dict]:
        return [json.loads(line) for line in self.query_raw(sql, region=region).decode().splitlines() if line]

    def wait_rows(self, sql: str, count: int, timeout: float = 30, region: str | None = None) -> list[dict]:
        deadline = time.monotonic() + timeout
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = self.rows(sql, region)
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        return rows

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=10, context=self._admin_context) as r:
            return r.read().decode()

    def fault(self, name: str, text: str = "") -> Path:
        """Turn on a fault switch (see gateway.testing.faults)."""
        path = self.workdir / "data" / "faults" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def clear_fault(self, name: str) -> None:
        (self.workdir / "data" / "faults" / name).unlink(missing_ok=True)

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs."""
        self.proc.kill()
        return self.proc.wait()

    def reconfigure(self, overrides: dict) -> None:
        self.config = deep_merge(self.config, overrides)
        self.config_path.write_text(yaml.safe_dump(self.config))

    def metric(self, name: str) -> float:
        """Sum of a metric's samples on /metrics (0 when absent)."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
