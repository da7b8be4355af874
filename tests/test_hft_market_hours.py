"""`orch hft --broker alpaca --market alpaca` keeps the NYSE's hours, on a clock the test sets.

Both clocks, the fake Alpaca's and orch hft's (ORCH_HFT_CLOCK_START), start at the same moment, so
the run is a session or a holiday whatever day the test runs. The process trades tier 1 (the market
maker quotes SPY and BTC/USD) and tier 2 (a plan for each); crypto orders reaching the fake prove
it is trading, and the fake's own order book (its admin API) says whether any equity order came.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from orch.fake_alpaca.server import FakeAlpacaSubprocess
from tests import test_hft_process as harness
from tests.test_hft_alpaca import alpaca_env
from tests.test_hft_process import HftUnderTest

hft = harness.hft  # starts hft processes and stops every one of them

CHRISTMAS = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)  # a Friday: a weekday rule would trade it
MONDAY_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 New York


def plan(plan_id: str, symbol: str, quantity: float, entry_price: float) -> dict:
    """A generic plan that enters at once with a resting limit far below the market."""
    return {
        "plan_id": plan_id,
        "symbol": symbol,
        "strategy": "generic",
        "side": "buy",
        "quantity": quantity,
        "entry_price": entry_price,
        "stop_loss": entry_price / 2,
        "take_profit": entry_price * 100,
        "valid_until": "2099-01-01T00:00:00Z",
    }


@pytest.fixture(params=[CHRISTMAS, MONDAY_SESSION], ids=["christmas", "monday-session"])
def moment(request: pytest.FixtureRequest) -> datetime:
    return request.param


@pytest.fixture
def fake_alpaca(moment: datetime) -> Iterator[FakeAlpacaSubprocess]:
    with FakeAlpacaSubprocess(tick_interval_seconds=0.05, clock_start=moment) as server:
        server.admin.set_price("BTC/USD", 60_000)
        server.admin.set_price("SPY", 500)
        yield server


def orch_hft_status(process: HftUnderTest) -> str:
    """What a user sees from `orch hft status` (the real command, against the real process)."""
    env = {**os.environ, "ORCH_HFT_TOKEN": process.env["ORCH_HFT_TOKEN"], "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "orch.cli.main", "hft", "status", "--url", process.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_equities_trade_only_in_a_session_on_the_set_clock(
    hft: Callable[..., HftUnderTest], fake_alpaca: FakeAlpacaSubprocess, moment: datetime
) -> None:
    env = alpaca_env(fake_alpaca) | {
        "ORCH_HFT_SYMBOLS": '["SPY", "BTC/USD"]',
        "ORCH_HFT_MARKET_MAKING": "true",
        "ORCH_HFT_MM_SYMBOLS": '["SPY", "BTC/USD"]',
        "ORCH_HFT_MM_QUOTE_QUANTITY": "1",
        "ORCH_HFT_CLOCK_START": moment.isoformat(),
    }
    process = hft(**env).start()
    process.wait_state("active")
    plans = [plan("spy-plan", "SPY", 1, 100.0), plan("btc-plan", "BTC/USD", 0.001, 30_000.0)]
    assert process.post("/plans", {"plans": plans}).json() == {
        "accepted": ["spy-plan", "btc-plan"],
        "rejected": {},
    }

    def orders_at_fake(symbol: str) -> list[dict]:
        return [o for o in fake_alpaca.admin.state()["orders"] if o["symbol"] == symbol]

    def crypto_traded() -> bool:
        # The market maker's BTC/USD quotes and tier 2's BTC/USD entry both reached the fake.
        btc = orders_at_fake("BTC/USD")
        return any(o["qty"] == "0.001" for o in btc) and any(o["qty"] != "0.001" for o in btc)

    process.wait_for(crypto_traded, timeout=30, what="tier 1 and tier 2 crypto orders at the fake Alpaca")
    status = orch_hft_status(process)
    assert f"started at {moment.isoformat()}" in status, status
    if moment is CHRISTMAS:
        # Another full tier-2 and market-maker round after crypto traded: still no equity order.
        ticks = process.get("/metrics")["ticks_total"]
        process.wait_for(lambda: process.get("/metrics")["ticks_total"] > ticks + 20, what="more quotes")
        assert orders_at_fake("SPY") == []
        assert "market closed, not trading: SPY (holiday: Christmas)" in status, status
        denials = process.get("/status")["risk"]["denials"]
        assert denials.get("market_closed", 0) > 0, denials  # the market maker tried, the gate said no
    else:
        process.wait_for(
            lambda: {o["qty"] for o in orders_at_fake("SPY")} >= {"1"},
            what="SPY orders at the fake Alpaca in a session",
        )
        assert "market closed" not in status, status
