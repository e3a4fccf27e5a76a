"""Store outage on a ClickHouse server: the link is cut by a TCP proxy.

Needs a server: CLICKHOUSE_URL (e.g. http://default:@127.0.0.1:8123).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

import pytest

from telemetry_gateway.gateway.errors import StoreUnavailable
from telemetry_gateway.gateway.store.server import ServerStore
from tests.durability.tcp_proxy import CuttableProxy
from tests.durability.test_durability import POINTS, per_request, send_http, settled, wait_for

pytestmark = pytest.mark.integration


def test_an_unreachable_server_is_a_retryable_error():
    store = ServerStore("default", "telemetry", "http://default:@127.0.0.1:1", timeout_s=2)
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_a_cut_link_to_the_server_is_retried_and_nothing_acknowledged_is_lost(start_gateway):
    url = os.environ.get("CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_URL is not set: no ClickHouse server to cut the link to")
    target = urlparse(url)
    proxy = CuttableProxy(target.hostname, target.port or 8123)
    proxied = target._replace(netloc=f"{target.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}" if "@" in target.netloc
                              else f"127.0.0.1:{proxy.port}").geturl()
    database = f"t_{uuid.uuid4().hex[:10]}"
    gw = start_gateway({
        "store": {"regions": {"default": {"backend": "clickhouse", "url": proxied, "database": database}},
                  "retry": {"initial": "100ms", "max": "500ms"}, "batch": {"max_delay": "100ms"}},
    })
    proxy.cut()
    acked = [n for n in range(5) if send_http(gw, "server_outage", n) == 200]
    assert acked == list(range(5))
    assert wait_for(lambda: gw.metric("gateway_store_errors_total") > 0)
    proxy.restore()
    stored = settled(gw, "server_outage", set(acked))
    assert stored == {n: (POINTS, POINTS) for n in acked}
    assert per_request(gw, "server_outage") == stored
