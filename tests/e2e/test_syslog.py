"""A real rsyslog forwarding RFC 5424 and RFC 3164 over TCP and UDP; JSON lines; hostile input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import pytest

from tests.durability.test_durability import wait_for
from tests.gateway_process import free_port
RSYSLOGD = "/usr/sbin/rsyslogd"  # Debian puts it in sbin, often off a user's PATH
from tests.receivers.otlp_requests import post, unique

pytestmark = pytest.mark.integration

FORWARDS = (
    ("tcp", "RSYSLOG_SyslogProtocol23Format", 'TCP_Framing="octet-counted"'),
    ("tcp", "RSYSLOG_TraditionalForwardFormat", ""),
    ("tcp", "RSYSLOG_ForwardFormat", ""),
    ("udp", "RSYSLOG_SyslogProtocol23Format", ""),
    ("udp", "RSYSLOG_TraditionalForwardFormat", ""),
    ("udp", "RSYSLOG_ForwardFormat", ""),
)


def start_rsyslog(workdir, in_port: int, tcp_port: int, udp_port: int) -> subprocess.Popen:
    actions = "\n".join(
        f'*.* action(type="omfwd" target="127.0.0.1" port="{tcp_port if proto == "tcp" else udp_port}" '
        f'protocol="{proto}" template="{template}" {extra})'
        for proto, template, extra in FORWARDS
    )
    (workdir / "spool").mkdir()
    config = workdir / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{workdir / "spool"}")\n'
        'module(load="imtcp")\n'
        f'input(type="imtcp" port="{in_port}" address="127.0.0.1")\n'
        f"{actions}\n"
    )
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config),
                             "-i", str(workdir / "rsyslog.pid")], stdout=open(workdir / "rsyslog.log", "ab"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", in_port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError((workdir / "rsyslog.log").read_text())


def test_rsyslog_forwards_its_stock_templates_over_tcp_and_udp(start_gateway, tmp_path):
    tcp_port, udp_port, in_port = free_port(), free_port(), free_port()
    gw = start_gateway({"receivers": {"syslog": {"tcp": {"enabled": True, "endpoint": f"127.0.0.1:{tcp_port}"},
                                                 "udp": {"enabled": True, "endpoint": f"127.0.0.1:{udp_port}"}}}})
    rsyslog = start_rsyslog(tmp_path, in_port, tcp_port, udp_port)
    app = unique("billing")
    try:
        with socket.create_connection(("127.0.0.1", in_port)) as sock:
            for i, pri in enumerate((11, 12, 14)):  # user.err, user.warning, user.info
                sock.sendall(f"<{pri}>{time.strftime('%b %d %H:%M:%S', time.gmtime())} web01 {app}[42]: invoice {i} posted\n".encode())
        rows = gw.wait_rows(
            "SELECT body, severity_text, attributes['syslog.format'] AS fmt, resource_attributes['host.name'] AS host, "
            f"splitByChar(':', source_id)[1] AS transport FROM telemetry.log_records WHERE service_name = '{app}' "
            "ORDER BY transport, fmt, body", 18, timeout=30)
    finally:
        rsyslog.terminate()
        rsyslog.wait(10)
    assert len(rows) == 18, (tmp_path / "rsyslog.log").read_text()
    sent = [("invoice 0 posted", "err"), ("invoice 1 posted", "warning"), ("invoice 2 posted", "info")]
    for transport in ("syslog-tcp", "syslog-udp"):
        # RFC 3164 framing twice: with its own timestamp (Traditional) and with RFC 3339 (ForwardFormat).
        for fmt, copies in (("rfc3164", 2), ("rfc5424", 1)):
            got = [(r["body"].strip(), r["severity_text"]) for r in rows if r["transport"] == transport and r["fmt"] == fmt]
            assert got == sorted(sent * copies), (transport, fmt)
    assert {r["host"] for r in rows} == {"web01"}
    assert gw.metric("gateway_rejected_total") == 0


def test_hostile_syslog_input_is_refused_and_the_connection_goes_on(start_gateway):
    tcp_port, udp_port = free_port(), free_port()
    gw = start_gateway({"receivers": {"syslog": {"max_message_kib": 32,
                                                 "tcp": {"enabled": True, "endpoint": f"127.0.0.1:{tcp_port}"},
                                                 "udp": {"enabled": True, "endpoint": f"127.0.0.1:{udp_port}"}}}})
    app = unique("hostile")
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
    with socket.create_connection(("127.0.0.1", tcp_port)) as sock:
        sock.sendall(b"<13>" + b"x" * (1024 * 1024) + b"\n")  # a 1 MiB line
        sock.sendall(f"<13>{stamp} h {app}: after the huge line\n".encode())
        big = b"<13>" + b"y" * 100_000
        sock.sendall(str(len(big)).encode() + b" " + big)  # an octet-counted frame over the limit
        framed = f"<13>1 {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} h {app} - - - framed after the big frame".encode()
        sock.sendall(str(len(framed)).encode() + b" " + framed)
        sock.sendall(b"garbage without pri\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"<13>" + b"z" * 40_000, ("127.0.0.1", udp_port))
        udp.sendto(f"<13>{stamp} h {app}: over udp".encode(), ("127.0.0.1", udp_port))
    rows = gw.wait_rows(f"SELECT body FROM telemetry.log_records WHERE service_name = '{app}' ORDER BY body", 3)
    assert [r["body"] for r in rows] == ["after the huge line", "framed after the big frame", "over udp"]
    text = gw.metrics_text()
    assert 'gateway_rejected_total{format="syslog",reason="too_large",tenant="default"} 3.0' in text
    assert 'gateway_rejected_total{format="syslog",reason="malformed",tenant="default"} 1.0' in text
    # Syslog has no answer: each kind of refusal says why in the log, with the start of the message.
    assert wait_for(lambda: "for example: no valid <PRI>" in gw.log())
    log = gw.log()
    # One line per kind every 10 s: whichever oversized message came first (the TCP line, the frame, the datagram).
    assert re.search(r"syslog from syslog-(tcp|udp):127\.0\.0\.1: 1 message refused \(too_large\): "
                     r"(a line|an octet count of 100004|a 40004-byte datagram) .*over max_message_kib", log), log
    assert ("1 syslog messages from syslog-tcp:127.0.0.1 refused (malformed: 1); for example: no valid <PRI> at "
            "the start, in b'garbage without pri\\n'") in log


def test_json_lines_over_http(gateway):
    service = unique("jsonl")
    lines = [json.dumps({"level": "warn", "msg": "slow query", "service": service, "ms": 812}), "{not json"]
    code, _, body = post(gateway.http_url, "/v1/logs/jsonl", "\n".join(lines).encode(), {"Content-Type": "application/x-ndjson"})
    assert code == 200
    assert json.loads(body) == {"accepted": 1, "rejected": 1,
                                "message": "1 lines rejected: line is not valid JSON; "
                                           "1 lines kept with a quality flag: time_from_received"}
    rows = gateway.wait_rows(f"SELECT body, severity_number, attributes FROM telemetry.log_records WHERE service_name = '{service}'", 1)
    assert rows == [{"body": "slow query", "severity_number": 13, "attributes": {"ms": "812"}}]


def test_syslog_ng_forwards_its_stock_formats(start_gateway, tmp_path):
    from tests.peers import syslog_ng

    tcp_port, udp_port = free_port(), free_port()
    gw = start_gateway({"receivers": {"syslog": {"tcp": {"enabled": True, "endpoint": f"127.0.0.1:{tcp_port}"},
                                                 "udp": {"enabled": True, "endpoint": f"127.0.0.1:{udp_port}"}}}})
    iso = 'template("<${PRI}>${ISODATE} ${HOST} ${MSGHDR}${MSG}\\n")'  # syslog-ng's way to ISO timestamps in 3164
    destinations = {
        "network-tcp": f'network("127.0.0.1" port({tcp_port}) transport("tcp") persist-name("a"));',
        "network-udp": f'network("127.0.0.1" port({udp_port}) transport("udp") persist-name("b"));',
        "iso-tcp": f'network("127.0.0.1" port({tcp_port}) transport("tcp") {iso} persist-name("c"));',
        "syslog-tcp": f'syslog("127.0.0.1" port({tcp_port}) transport("tcp") persist-name("d"));',
        "syslog-udp": f'syslog("127.0.0.1" port({udp_port}) transport("udp") persist-name("e"));',
    }
    peer, in_port = syslog_ng(tmp_path, list(destinations.values()))
    app = unique("sng")
    stamp = time.time() - 5
    try:
        with socket.create_connection(("127.0.0.1", in_port)) as sock:
            for i, pri in enumerate((11, 12, 14)):
                sent = time.strftime("%b %d %H:%M:%S", time.gmtime(stamp))
                sock.sendall(f"<{pri}>{sent} web02 {app}[7]: shipment {i} sent\n".encode())
        rows = gw.wait_rows(
            "SELECT body, severity_text, attributes['syslog.format'] AS fmt, attributes['syslog.procid'] AS pid, "
            "resource_attributes['host.name'] AS host, toUnixTimestamp(time) AS t FROM telemetry.log_records "
            f"WHERE service_name = '{app}' ORDER BY body, fmt", 15, timeout=30)
    finally:
        peer.stop()
    assert len(rows) == 15, peer.log_path.read_text()
    assert [(r["body"], r["severity_text"]) for r in rows[::5]] == [
        ("shipment 0 sent", "err"), ("shipment 1 sent", "warning"), ("shipment 2 sent", "info")]
    assert sorted({r["fmt"] for r in rows}) == ["rfc3164", "rfc5424"]
    assert {(r["host"], r["pid"]) for r in rows} == {("web02", "7")}
    assert {r["t"] for r in rows} == {int(stamp)}
    assert gw.metric("gateway_rejected_total") == 0
