"""Real peer processes for tests: Prometheus, exporters, rsyslog (Debian packages).

`.ci/run` installs them; a test that needs one and does not find it fails
(it does not skip): CI must run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from tests.gateway_process import ROOT, free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; .ci/run installs it (Debian package)")
    return path


class Peer:
    def __init__(self, argv: list[str], ready_url: str, log: Path, env: dict | None = None) -> None:
        self.ready_url = ready_url
        self.log_path = log
        self.proc = subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 30) -> "Peer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[0]} exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.proc.args[0]} not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def node_exporter(workdir: Path) -> tuple[Peer, int]:
    port = free_port()
    argv = [binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{port}"]
    return Peer(argv, f"http://127.0.0.1:{port}/metrics", workdir / "node_exporter.log").wait_ready(), port


def blackbox_exporter(workdir: Path) -> tuple[Peer, int]:
    port = free_port()
    config = workdir / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": {
        "http_2xx": {"prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}},
        "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"preferred_ip_protocol": "ip4"}},
    }}))
    argv = [binary("prometheus-blackbox-exporter"), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    return Peer(argv, f"http://127.0.0.1:{port}/metrics", workdir / "blackbox.log").wait_ready(), port


def prometheus(workdir: Path, scrape_targets: dict[str, list[str]], remote_write_url: str | None,
               metadata_interval: str = "1s", remote_write_extra: dict | None = None) -> tuple[Peer, int]:
    port = free_port()
    own = f"127.0.0.1:{port}"  # "SELF" in a target list: Prometheus scraping itself
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [own if t == "SELF" else t for t in targets]}]}
                           for job, targets in scrape_targets.items()],
    }
    if remote_write_url:
        config["remote_write"] = [{
            "url": remote_write_url,
            "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
            "metadata_config": {"send": True, "send_interval": metadata_interval},
            **(remote_write_extra or {}),
        }]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    argv = [binary("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    return Peer(argv, f"http://127.0.0.1:{port}/-/ready", workdir / "prometheus.log").wait_ready(60), port



def snmp_agent(workdir: Path) -> tuple[subprocess.Popen, int]:
    """snmpd answering community `public` on a loopback UDP port."""
    port = free_port()
    config = workdir / "snmpd.conf"
    config.write_text(f"agentAddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\n")
    proc = subprocess.Popen(["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(config), "-p", str(workdir / "snmpd.pid")],
                            stdout=open(workdir / "snmpd.log", "ab"), stderr=subprocess.STDOUT)
    return proc, port


def snmp_exporter(workdir: Path) -> tuple[Peer, int]:
    port = free_port()
    argv = [binary("prometheus-snmp-exporter"), f"--config.file={ROOT / 'deploy' / 'snmp.yml'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    return Peer(argv, f"http://127.0.0.1:{port}/metrics", workdir / "snmp_exporter.log").wait_ready(), port


SYSLOG_NG = ROOT / ".peers" / "syslog-ng"  # extracted by deploy/setup-peers.sh: its package conflicts with rsyslog's


def syslog_ng(workdir: Path, destinations: list[str]) -> tuple[Peer, int]:
    """syslog-ng 3.38 taking RFC 3164 lines on a TCP port and forwarding them to each destination."""
    binary_path = SYSLOG_NG / "usr" / "sbin" / "syslog-ng"
    if not binary_path.exists():
        raise RuntimeError(f"{binary_path} is missing; deploy/setup-peers.sh extracts it")
    port = free_port()
    libs = SYSLOG_NG / "usr" / "lib" / "syslog-ng"
    names = [f"d{i}" for i in range(len(destinations))]
    config = workdir / "syslog-ng.conf"
    config.write_text(
        "@version: 3.38\noptions { keep-hostname(yes); };\n"
        f'source s_in {{ network(ip("127.0.0.1") port({port}) transport("tcp")); }};\n'
        + "".join(f"destination {n} {{ {d} }};\n" for n, d in zip(names, destinations))
        + "log { source(s_in); " + " ".join(f"destination({n});" for n in names) + " };\n")
    argv = [str(binary_path), "-F", "-f", str(config), f"--module-path={libs / '3.38'}",
            f"--persist-file={workdir / 'syslog-ng.persist'}", f"--pidfile={workdir / 'syslog-ng.pid'}",
            f"--control={workdir / 'syslog-ng.ctl'}"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs)}
    peer = Peer(argv, "", workdir / "syslog-ng.log", env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise RuntimeError(f"syslog-ng exited:\n{peer.log_path.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return peer, port
        except OSError:
            time.sleep(0.1)
    peer.stop()
    raise TimeoutError("syslog-ng not listening")
