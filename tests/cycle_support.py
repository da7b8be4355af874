"""What the trading cycle and engine tests share (no tests here): a market with known trends, a real
`orch hft` subprocess, fast per-step policies, and a stack whose workers reach that process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from orch.contracts.engine import CyclePolicies, EngineConfig, ExecutionSettings, StepPolicy
from orch.market.base import PriceHistory
from orch.market.simulated import CRYPTO_PAIRS, SimulatedMarket
from tests.conftest import Stack
from tests.test_hft_process import HftUnderTest

ACCOUNT = "t1"  # HftUnderTest's account: plans' order ids are derived from it
CRYPTO = list(CRYPTO_PAIRS)  # crypto trades every day, so no test depends on the weekday


class TrendingMarket(SimulatedMarket):
    """The simulated market's calendar and latest prices, with every symbol in a steady uptrend.

    Each series ends at the simulated market's last close (where `orch hft`'s ticks start, with the
    same seed), so plans are priced where the process trades; the trend makes the composer plan a buy
    for every symbol, whatever day the test runs.
    """

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        base = super().history(symbol, bars, end)
        n = len(base)
        rng = np.random.default_rng(len(symbol))
        steps = 0.004 + 0.0015 * rng.standard_normal(n)
        log_close = np.cumsum(steps) - np.sum(steps)
        close = base.close[-1] * np.exp(log_close)
        open_ = np.concatenate([close[:1], close[:-1]])
        return PriceHistory(
            symbol=symbol,
            timestamps=base.timestamps,
            open=open_,
            high=np.maximum(open_, close) * 1.01,
            low=np.minimum(open_, close) * 0.99,
            close=close,
            volume=np.full(n, 1_000.0),
        )


def fast_policies(**overrides: StepPolicy) -> CyclePolicies:
    quick = StepPolicy(timeout_seconds=30, max_attempts=2, initial_retry_seconds=0.1, max_retry_seconds=0.5)
    steps = {name: quick for name in CyclePolicies.model_fields if name != "heartbeat_timeout_seconds"}
    return CyclePolicies(**(steps | overrides), heartbeat_timeout_seconds=5)


def fast_config(**overrides: Any) -> dict[str, Any]:
    """Engine options for tests: crypto only, fast retries, a short settle window."""
    return {
        "symbols": CRYPTO,
        "policies": fast_policies(),
        "execution": ExecutionSettings(settle_seconds=3),
        "lookback_bars": 150,
        "hft_heartbeat_seconds": 1,
        "emergency_poll_seconds": 0.3,
        # A test without orch hft should not wait the default 20 s for it on its first cycle.
        "hft_ready_timeout_seconds": 2,
        **overrides,
    }


def cycle_config(**overrides: Any) -> EngineConfig:
    return EngineConfig(**fast_config(**overrides))


async def start_hft(make: Callable[..., HftUnderTest], **env: str) -> HftUnderTest:
    """A real `orch hft` on the four crypto pairs, tier 1 off so every order is the cycle's."""
    defaults = {
        "ORCH_HFT_SYMBOLS": '["BTC/USD", "ETH/USD", "SOL/USD", "LTC/USD"]',
        "ORCH_HFT_MARKET_MAKING": "false",
        "ORCH_HFT_ARBITRAGE": "false",
    }
    process = make(**(defaults | env)).start()
    await asyncio.to_thread(process.wait_state, "active")
    return process


async def start_cycle_stack(stack: Stack, process: HftUnderTest, **kwargs: Any) -> None:
    """Workers for every queue, reaching `process`, on the trending market unless told otherwise."""
    stack.settings.hft_url = process.url
    stack.settings.hft_token = SecretStr(process.env["ORCH_HFT_TOKEN"])
    kwargs.setdefault("market", TrendingMarket(seed=stack.settings.market_seed))
    await stack.start(**kwargs)


async def hft_get(process: HftUnderTest, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(headers=process.headers, timeout=5) as http:
        response = await http.get(process.url + path, params=params)
        response.raise_for_status()
        return response.json()


@pytest.fixture
async def hft_process(hft: Callable[..., HftUnderTest]) -> AsyncIterator[HftUnderTest]:
    yield await start_hft(hft)
