"""Bounded OTLP load generator: pre-encoded requests, several concurrent senders.

Every request is sent once; the run stops by itself when they are all answered
(or when `deadline_s` passes). Only loopback targets.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import aiohttp
import grpc

METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@dataclass
class LoadResult:
    requests: int
    failures: int
    seconds: float
    errors: list[str]


async def _drive(payloads: list[bytes], concurrency: int, send, deadline_s: float) -> LoadResult:
    queue = list(reversed(payloads))
    failures, errors = 0, []
    stop_at = time.monotonic() + deadline_s

    async def worker() -> None:
        nonlocal failures
        while queue and time.monotonic() < stop_at:
            payload = queue.pop()
            try:
                await send(payload)
            except Exception as exc:  # counted and reported, the run goes on
                failures += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(len(payloads) - len(queue), failures, time.perf_counter() - started, errors)


async def grpc_load(endpoint: str, payloads: list[bytes], concurrency: int, method: str = METRICS_METHOD,
                    deadline_s: float = 300, token: str = "", connections: int = 1) -> LoadResult:
    """`connections` channels of their own (one HTTP/2 connection each, as that many Collectors would
    keep), taken in turn."""
    assert endpoint.startswith(("127.", "localhost", "[::1]")), "load only loopback targets"
    # A local subchannel pool: channels to one address would otherwise share one connection.
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(endpoint, options=options) for _ in range(connections)]
    calls = itertools.cycle([channel.unary_unary(method) for channel in channels])
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        return await _drive(payloads, concurrency, lambda p: next(calls)(p, timeout=60, metadata=metadata), deadline_s)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


async def http_load(url: str, payloads: list[bytes], concurrency: int, deadline_s: float = 300,
                    token: str = "") -> LoadResult:
    assert url.startswith(("http://127.", "http://localhost")), "load only loopback targets"
    headers = {"Content-Type": "application/x-protobuf", **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as session:
        async def send(payload: bytes) -> None:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")

        return await _drive(payloads, concurrency, send, deadline_s)
