"""The gateway process's side: start the listener workers, answer them, restart one that dies.

Each worker is `python -m telemetry_gateway.gateway.workers.process`, given
the gateway's config on its stdin and one end of a socket pair as an
inherited descriptor. It serves the OTLP gRPC and HTTP listeners on ports
the workers share (SO_REUSEPORT: the kernel spreads connections over them)
and hands every request to this process, which admits, adapts, spools and
stores it as if its own listener had taken it, and answers once it is
spooled, as always. A worker that exits while the gateway runs is logged,
reported by /readyz, and started again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import asdict

from telemetry_gateway.gateway.access import Admission, Credentials
from telemetry_gateway.gateway.adapting import Adapted
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.components import FORMATS
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.errors import StoreUnavailable
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.workers.link import error_header, frame, read_frame

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0
RESTART_DELAY_S = (0.5, 30.0)  # first and longest wait before starting a dead worker again


class ListenerWorkers:
    """`receivers.otlp.workers` processes serving the OTLP listeners for this gateway process."""

    def __init__(self, config: GatewayConfig, pipeline, telemetry: SelfMetrics) -> None:
        self.config = config
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.count = config.receivers.otlp.workers
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: dict[int, asyncio.Event] = {}
        # /readyz says not ready until every worker listens: the admin listener is up before them.
        self._problems = {i: f"listener worker {i} is starting" for i in range(self.count)}
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    async def start(self) -> None:
        """Every worker started and listening, or OSError saying which did not."""
        await asyncio.to_thread(_check_ports_free, self.config)
        for index in range(self.count):
            await self._start_one(index)
        log.info("%d listener workers serving the OTLP ports", self.count)

    def health(self) -> list[str]:
        return [self._problems[i] for i in sorted(self._problems)]

    async def shutdown(self) -> None:
        """SIGTERM every worker: each stops taking connections and finishes its requests (answered
        from here, so this process keeps serving their links until they exit)."""
        self._stopping = True
        procs = [p for p in self._procs.values() if p.returncode is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        grace = self.config.shutdown.drain_timeout + 10
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
        except TimeoutError:
            for proc in procs:
                if proc.returncode is None:
                    log.error("listener worker pid %d did not stop within %gs; killing it", proc.pid, grace)
                    proc.kill()
            await asyncio.gather(*(p.wait() for p in procs))
        for task in list(self._tasks):
            task.cancel()

    async def _start_one(self, index: int) -> None:
        ready = self._ready[index] = asyncio.Event()
        proc = await self._spawn(index)
        waiting = asyncio.ensure_future(ready.wait())
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({waiting, exited}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if waiting not in done:
            exited.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise OSError(f"listener worker {index} stopped before its listeners were up "
                          f"(exit code {proc.returncode}); its log above says why")
        self._problems.pop(index, None)
        self._keep(self._watch(index, proc.pid, exited))

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "telemetry_gateway.gateway.workers.process", str(theirs.fileno()), str(index),
                stdin=asyncio.subprocess.PIPE, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        proc.stdin.write(self.config.model_dump_json().encode())
        await proc.stdin.drain()
        proc.stdin.close()
        self._procs[index] = proc
        reader, writer = await asyncio.open_connection(sock=ours)
        self._keep(self._serve(index, reader, writer))
        return proc

    async def _watch(self, index: int, pid: int, exited: asyncio.Future) -> None:
        """Start a worker again when it exits on its own, waiting longer each time a start fails."""
        code, delay = await exited, RESTART_DELAY_S[0]
        if not self._stopping:
            self.telemetry.worker_exits.inc()
        while not self._stopping:
            self._problems[index] = f"listener worker {index} exited (code {code}); starting it again"
            log.error("listener worker %d (pid %d) exited with code %s; starting it again in %gs",
                      index, pid, code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._start_one(index)
            except OSError as exc:
                log.error("%s", exc)
                delay = min(delay * 2, RESTART_DELAY_S[1])
                continue
            log.info("listener worker %d is serving again", index)
            return

    async def _serve(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one worker's frames until it closes its end; each request on a task of its own."""
        admissions = Admissions(self.config.receivers.otlp.http.connections.request_timeout + 60)
        try:
            while True:
                header, body = await read_frame(reader)
                op = header.get("op")
                if op == "ready":
                    self._ready[index].set()
                elif op == "count":
                    self.telemetry.request(header["transport"], header["format"], header["outcome"])
                elif op == "rejected":
                    self.telemetry.rejected(header["format"], header["tenant"], header["reason"], header["n"])
                else:
                    self._keep(self._answer(writer, admissions, header, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker exited; _watch reports it
        except Exception:  # a frame this process cannot read: closing the link ends the worker, which restarts
            log.exception("listener worker %d sent a frame that cannot be read; closing its link", index)
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, admissions: Admissions, header: dict, body: bytes) -> None:
        try:
            reply = await self._run(admissions, header, body)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the worker's client
            reply = error_header(exc)
        if writer.is_closing():
            return  # the worker is gone: its client gets no answer and sends again
        writer.write(frame({**reply, "id": header.get("id")}))
        try:
            await writer.drain()
        except ConnectionError:
            pass

    async def _run(self, admissions: Admissions, header: dict, body: bytes) -> dict:
        format_name = header["format"]
        if format_name not in FORMATS:
            raise ValueError(f"unknown format {format_name!r}")
        caller, credentials = Caller(**header["caller"]), Credentials(**header["credentials"])
        if header["op"] == "admit":
            admission = self.pipeline.admit(format_name, caller, credentials)
            return {"admission": admissions.keep(admission), "tenant": admission.tenant}
        # A request was admitted before its body was read or adapted, as in one process: the body comes
        # under that admission (one forgotten meanwhile is admitted afresh).
        admission = admissions.take(header.get("admission"))
        self.telemetry.handed_over(format_name, "worker" if header["op"] == "rows" else "gateway")
        if header["op"] == "rows":
            adapted = Adapted.of(header, body)
            admission = admission or self.pipeline.admit(format_name, caller, credentials)
            if admission.tenant != header["tenant"]:  # the series ids were made for the tenant admitted before
                raise StoreUnavailable("the policy changed while the request was adapted; retry")
            report = await self.pipeline.ingest_adapted(format_name, adapted, admission, header["source_id"])
        else:
            report = await self.pipeline.ingest(format_name, body, caller, header["source_id"],
                                                None if admission else credentials, admission)
        return {"report": asdict(report)}

    def _keep(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Admissions:
    """Admissions a worker holds while it reads the body, by number; one that no body claims within
    `ttl_s` (the client went away) is forgotten, and a late body is admitted afresh."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._held: OrderedDict[int, tuple[float, Admission]] = OrderedDict()
        self._next = 0

    def keep(self, admission: Admission) -> int:
        now = time.monotonic()
        while self._held and next(iter(self._held.values()))[0] < now - self.ttl_s:
            self._held.popitem(last=False)
        self._next += 1
        self._held[self._next] = (now, admission)
        return self._next

    def take(self, number) -> Admission | None:
        held = self._held.pop(number, None)
        return held[1] if held is not None else None


def _check_ports_free(config: GatewayConfig, wait_s: float = 5.0) -> None:
    """The workers bind with SO_REUSEPORT, which would let them share a port with another gateway of
    the same user: bind each port once without it first, so a port in use is an error, as it is
    for one process. The workers of a gateway that was killed exit once their link closes: a
    port they still hold is waited for, `wait_s` at most."""
    otlp = config.receivers.otlp
    deadline = time.monotonic() + wait_s
    for listener in (otlp.grpc, otlp.http):
        if not listener.enabled:
            continue
        host, port = listener.endpoint.rsplit(":", 1)
        for family, kind, proto, _, address in socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            while (error := _bind_error(family, kind, proto, address)) is not None:
                if error != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise OSError(error, f"cannot listen on {listener.endpoint}: {os.strerror(error)}")
                time.sleep(0.1)


def _bind_error(family, kind, proto, address) -> int | None:
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno
    return None


__all__ = ["ListenerWorkers"]
