"""Per-tenant rates and series budgets, with a clock the test moves."""

from __future__ import annotations

import pyarrow as pa
import pytest

from telemetry_gateway.gateway.quotas import SERIES_IDLE_S, Rates, SeriesBudget, TenantThrottled
from telemetry_gateway.policies.model import TenantLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_past_the_rate_wait_for_the_bucket_and_tenants_do_not_share_it():
    clock = Clock()
    rates = Rates(clock)
    limits = TenantLimits(requests_per_second=2, burst_seconds=1)
    rates.admit("a", limits)
    rates.admit("a", limits)
    with pytest.raises(TenantThrottled) as caught:
        rates.admit("a", limits)
    assert caught.value.retry_after_s == pytest.approx(0.5)
    rates.admit("b", limits)  # another tenant has its own bucket
    clock.now += 0.5
    rates.admit("a", limits)


def test_items_are_paid_after_the_fact_and_a_debt_holds_the_next_request():
    clock = Clock()
    rates = Rates(clock)
    limits = TenantLimits(items_per_second=100, burst_seconds=1)
    rates.admit("a", limits)
    rates.spend("a", limits, 300)  # one request of 300 items: 200 in debt
    with pytest.raises(TenantThrottled) as caught:
        rates.admit("a", limits)
    assert caught.value.retry_after_s == pytest.approx(2.0)
    clock.now += 2.0
    rates.admit("a", limits)
    rates.admit("z", TenantLimits())  # no limits: never throttled


def test_the_series_budget_keeps_known_series_and_refuses_new_ones_past_the_limit():
    clock = Clock()
    budget = SeriesBudget(clock=clock)
    assert budget.admit(pa.array([1, 2, 1], pa.uint64()), 3) is None
    refused = budget.admit(pa.array([4, 1, 5, 4, 6], pa.uint64()), 3)
    assert refused.tolist() == [False, False, True, False, True]  # 4 fits (first seen first), 5 and 6 do not
    assert budget.admit(pa.array([2, 4], pa.uint64()), 3) is None
    clock.now += SERIES_IDLE_S
    assert budget.admit(pa.array([1], pa.uint64()), 3) is None  # known from the previous period
    assert budget.admit(pa.array([7], pa.uint64()), 3).tolist() == [True]  # 2 and 4 not yet forgotten
    clock.now += SERIES_IDLE_S  # 2 and 4 unseen for two periods leave; 1 was seen in the last one
    assert budget.admit(pa.array([7, 8], pa.uint64()), 3) is None
    assert budget.admit(pa.array([9], pa.uint64()), 3).tolist() == [True]


def test_a_tenants_memory_share_throttles_it_and_not_the_others():
    from telemetry_gateway.gateway.memory import EXPANSION, MemoryLimiter

    limiter = MemoryLimiter(100 * EXPANSION)
    with limiter.hold(30, "flood", 0.5):
        with pytest.raises(TenantThrottled, match="share"):
            with limiter.hold(30, "flood", 0.5):
                pass
        with limiter.hold(30, "calm", 0.5):  # another tenant's request still fits the gateway's limit
            assert limiter.by_tenant == {"flood": 30 * EXPANSION, "calm": 30 * EXPANSION}
        with limiter.hold(10, "flood", 0.5):  # within its share
            pass
    assert limiter.in_flight == 0 and limiter.by_tenant == {"flood": 0, "calm": 0}
