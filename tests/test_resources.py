"""The worker's resource pool under concurrent activities on a real worker: per-API rate limits hold in
every window (seen from the API's side), the TTL cache loads each key once and counts its hits, and
the statistics say so. Short windows stand in for Alpaca's minute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow

from orch.contracts.names import COMMANDS_QUEUE
from orch.market.alpaca import AlpacaMarketData
from orch.market.base import MarketDataError
from orch.resources import RateLimited, ResourcePool
from tests.data_support import RecordingApi, most_in_any_window, recording_api

FRIDAY_EVENING = datetime(2025, 3, 7, 22, 0, tzinfo=UTC)
WINDOW = 1.0  # seconds: the "minute" of these tests
# How much earlier than the limiter's clock an arrival may look: requests travel, threads wake late.
JITTER = 0.15


class Job(BaseModel):
    activity: str
    activities: int
    requests: int


class Hammers:
    """Activities that hit the recording API through the pool, as real activities hit real APIs."""

    def __init__(self, pool: ResourcePool, api: RecordingApi, alpaca: AlpacaMarketData) -> None:
        self.pool, self.api, self.alpaca = pool, api, alpaca

    @activity.defn(name="hammer_http")
    async def hammer_http(self, index: int, requests: int) -> int:
        for n in range(requests):
            response = await self.pool.request("test-api", "GET", f"{self.api.url}/hit/{index}/{n}")
            response.raise_for_status()
        return requests

    @activity.defn(name="hammer_alpaca")
    async def hammer_alpaca(self, index: int, requests: int) -> int:
        # A market source is synchronous: from a thread, its blocking alpaca-py calls wait for the
        # limit on the worker's loop.
        answered = 0
        for _ in range(requests):
            try:
                await asyncio.to_thread(self.alpaca.history, "AAPL", 3, FRIDAY_EVENING)
            except MarketDataError:
                answered += 1  # the recording API has no bars: an answer all the same
        return answered

    @activity.defn(name="read_quotes")
    async def read_quotes(self, index: int, requests: int) -> int:
        async def fetch(key: str) -> str:
            response = await self.pool.request("test-api", "GET", f"{self.api.url}/quote/{key}")
            return response.text

        for _ in range(requests):
            for key in ("AAPL", "MSFT", "NVDA"):
                await self.pool.cached(("quote", key), lambda key=key: fetch(key))
        return requests


@workflow.defn(name="ResourcePoolHammer", sandboxed=False)
class ResourcePoolHammer:
    @workflow.run
    async def run(self, job: Job) -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        job.activity, args=[i, job.requests], start_to_close_timeout=timedelta(seconds=120)
                    )
                    for i in range(job.activities)
                )
            )
        )


async def _run(bare_stack, pool: ResourcePool, api: RecordingApi, job: Job) -> list[int]:
    alpaca = AlpacaMarketData(
        url_override=api.url, timeout_seconds=5, resources=pool, api_key="k", secret_key="s"
    )
    hammers = Hammers(pool, api, alpaca)
    await bare_stack.start(
        queues=(COMMANDS_QUEUE,),
        extra_workflows=[ResourcePoolHammer],
        extra_activities=[hammers.hammer_http, hammers.hammer_alpaca, hammers.read_quotes],
        resources=pool,
    )
    try:
        return await bare_stack.client.execute_workflow(
            ResourcePoolHammer.run, job, id=f"hammer-{job.activity}", task_queue=COMMANDS_QUEUE
        )
    finally:
        alpaca.close()


async def test_a_rate_limit_holds_in_every_window_under_concurrent_activities(bare_stack) -> None:
    limit = 20
    pool = ResourcePool(rate_limits={"test-api": limit}, window_seconds=WINDOW)
    with recording_api() as api:
        done = await _run(bare_stack, pool, api, Job(activity="hammer_http", activities=10, requests=6))
        times = api.times("/hit")
    assert done == [6] * 10 and len(times) == 60
    # Without the limit all 60 would arrive within a fraction of a second.
    assert most_in_any_window(times, WINDOW - JITTER) <= limit
    stats = pool.stats().apis["test-api"]
    assert (stats.requests, stats.errors, stats.limit_per_window) == (60, 0, limit)
    assert stats.throttled > 0
    figures = pool.health_figures()
    assert figures["api:test-api"]["requests"] == 60 and figures["pool"]["error_rate"] == 0


async def test_alpaca_py_calls_from_threads_wait_for_the_same_limit(bare_stack) -> None:
    limit = 8
    pool = ResourcePool(rate_limits={"alpaca-data": limit}, window_seconds=WINDOW)
    with recording_api() as api:
        done = await _run(bare_stack, pool, api, Job(activity="hammer_alpaca", activities=6, requests=4))
        times = api.times("/v2/stocks/bars")
    assert done == [4] * 6 and len(times) == 24
    assert most_in_any_window(times, WINDOW - JITTER) <= limit
    stats = pool.stats().apis["alpaca-data"]
    assert stats.requests == 24 and stats.throttled > 0


async def test_the_cache_loads_each_key_once_for_all_concurrent_activities(bare_stack) -> None:
    pool = ResourcePool(cache_ttl_seconds=60, cache_max_entries=16)
    with recording_api() as api:
        done = await _run(bare_stack, pool, api, Job(activity="read_quotes", activities=8, requests=5))
        assert done == [5] * 8
        assert {path: sum(1 for _, p in api.arrivals if p == path) for _, path in api.arrivals} == {
            "/quote/AAPL": 1,
            "/quote/MSFT": 1,
            "/quote/NVDA": 1,
        }
    stats = pool.stats()
    lookups = 8 * 5 * 3
    assert (stats.cache_misses, stats.cache_hits, stats.cache_size) == (3, lookups - 3, 3)
    assert stats.hit_rate == pytest.approx((lookups - 3) / lookups)


async def test_the_cache_keeps_to_its_size_and_ttl_and_a_limit_refuses_after_its_longest_wait() -> None:
    pool = ResourcePool(
        cache_ttl_seconds=0.3,
        cache_max_entries=4,
        rate_limits={"slow": 1},
        window_seconds=60,
        max_wait_seconds=0.2,
    )
    loads: list[int] = []

    async def load(n: int) -> int:
        loads.append(n)
        return n * n

    for n in range(10):
        assert await pool.cached(("square", n), lambda n=n: load(n)) == n * n
    assert pool.stats().cache_size == 4  # the oldest went first
    assert await pool.cached(("square", 9), lambda: load(9)) == 81 and loads.count(9) == 1
    await asyncio.sleep(0.4)  # past the TTL
    assert pool.stats().cache_size == 0
    await pool.cached(("square", 9), lambda: load(9))
    assert loads.count(9) == 2

    failures = 0

    async def failing() -> int:
        nonlocal failures
        failures += 1
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        await pool.cached("flaky", failing)
    with pytest.raises(RuntimeError):
        await pool.cached("flaky", failing)
    assert failures == 2  # errors are not cached

    await pool.acquire("slow")  # the one request of this minute
    with pytest.raises(RateLimited, match=r"slow: rate limit of 1 per 60 s still reached after 0\.2 s"):
        await pool.acquire("slow")
    assert not pool.try_acquire("slow")
    stats = pool.stats().apis["slow"]
    assert (stats.throttled, stats.rate_limited) == (1, 2)
    await pool.aclose()
