"""What the emergency, health and review tests share: a real `orch hft` and settings pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from orch.config import Settings
from orch.hft.client import HftClient
from tests.test_hft_process import TOKEN, HftUnderTest

# Only the test's own orders move positions: no market making, no arbitrage.
QUIET = {"ORCH_HFT_MARKET_MAKING": "false", "ORCH_HFT_ARBITRAGE": "false"}


@contextlib.asynccontextmanager
async def running_hft(data_dir: Path, **env: str) -> AsyncIterator[HftUnderTest]:
    """A real `orch hft` (simulated venue, crypto symbols), ACTIVE before the block; stopped after it."""
    data_dir.mkdir()
    process = HftUnderTest(data_dir, **env).start()
    try:
        await asyncio.to_thread(process.wait_state, "active", 30)
        yield process
    finally:
        await asyncio.to_thread(process.stop)


def client_of(process: HftUnderTest) -> HftClient:
    return HftClient(process.url, token=TOKEN, timeout_seconds=5)


def with_hft(settings: Settings, url: str, **overrides: object) -> Settings:
    """The test's settings pointed at an orch hft; reviews far apart so they stay out of the way."""
    return settings.model_copy(
        update={
            "hft_url": url,
            "hft_token": SecretStr(TOKEN),
            "emergency_confirm_seconds": 15.0,
            "tactical_review_interval_seconds": 3600.0,
            "strategic_review_interval_seconds": 3600.0,
            **overrides,
        }
    )
