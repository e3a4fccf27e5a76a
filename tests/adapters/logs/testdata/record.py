"""Record what a real rsyslog sends: RFC 5424 octet-counted and RFC 3164 newline-framed over TCP.

Run `python tests/adapters/logs/testdata/record.py` (Debian package rsyslog).
rsyslog receives three messages on imtcp and forwards them to two capture
sockets; each raw TCP stream is saved as it arrived.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[3]))

from tests.gateway_process import free_port  # noqa: E402

FORWARDS = {"rsyslog_rfc5424_octet.bin": ("RSYSLOG_SyslogProtocol23Format", 'TCP_Framing="octet-counted"'),
            "rsyslog_rfc3164_newline.bin": ("RSYSLOG_TraditionalForwardFormat", "")}


def capture(server: socket.socket, into: bytearray) -> None:
    conn, _ = server.accept()
    while data := conn.recv(65536):
        into += data


def main() -> None:
    streams, servers = {}, {}
    for name in FORWARDS:
        server = socket.create_server(("127.0.0.1", 0))
        servers[name], streams[name] = server, bytearray()
        threading.Thread(target=capture, args=(server, streams[name]), daemon=True).start()
    in_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "spool").mkdir()
        actions = "\n".join(
            f'*.* action(type="omfwd" target="127.0.0.1" port="{servers[n].getsockname()[1]}" protocol="tcp" '
            f'template="{template}" {extra})' for n, (template, extra) in FORWARDS.items())
        (work / "rsyslog.conf").write_text(
            f'global(workDirectory="{work / "spool"}")\nmodule(load="imtcp")\n'
            f'input(type="imtcp" port="{in_port}" address="127.0.0.1")\n{actions}\n')
        proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", str(work / "rsyslog.conf"), "-i", str(work / "pid")])
        time.sleep(1.5)
        with socket.create_connection(("127.0.0.1", in_port)) as sock:
            for pri, text in ((11, "payment failed for order A-7"), (12, "retrying gateway call"), (14, "order A-7 paid")):
                sock.sendall(f"<{pri}>Jan 15 08:00:0{pri % 10} web01 billing[42]: {text}\n".encode())
        time.sleep(2)
        proc.terminate()
        proc.wait(10)
    for name, data in streams.items():
        (HERE / name).write_bytes(bytes(data))
        print(name, len(data))


if __name__ == "__main__":
    main()
