"""The `orch hft` process as a real subprocess: control API, kill, signals, dead man's switch, crash safety.

Every process a test starts is stopped by the fixture that started it, whatever the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TOKEN = "test-token-0123456789"
FAST_ENV = {
    "ORCH_HFT_ACCOUNT": "t1",
    "ORCH_HFT_TOKEN": TOKEN,
    # Crypto only: the weekend rule would otherwise make these tests depend on the day they run.
    "ORCH_HFT_SYMBOLS": '["BTC/USD", "ETH/USD"]',
    "ORCH_HFT_MM_SYMBOLS": '["BTC/USD", "ETH/USD"]',
    "ORCH_HFT_TICK_RATE": "2000",
    "ORCH_HFT_FILL_POLL_SECONDS": "0.005",
    "ORCH_HFT_RECONCILE_INTERVAL_SECONDS": "0.5",
    "ORCH_HFT_POSITION_INTERVAL_SECONDS": "0.2",
    "ORCH_HFT_TIER2_INTERVAL_SECONDS": "0.05",
    "ORCH_HFT_RISK__MAX_ORDER_NOTIONAL": "1000000",
    "ORCH_HFT_RISK__MAX_POSITION_NOTIONAL": "10000000",
    "ORCH_HFT_RISK__MAX_GROSS_EXPOSURE": "100000000",
    "ORCH_HFT_RISK__MAX_POSITION_QUANTITY": "100000",
    "ORCH_HFT_RISK__MAX_ORDERS_PER_INTERVAL": "100000",
    "ORCH_HFT_RISK__MAX_DAILY_LOSS": "100000000",
    "ORCH_HFT_SIM_LATENCY_SECONDS": "0.002",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HftUnderTest:
    """One `python -m orch.workers.hft` subprocess with its own data directory and port."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            **FAST_ENV,
            "ORCH_HFT_DATA_DIR": str(data_dir),
            "ORCH_HFT_PORT": str(self.port),
            **env,
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {self.env.get('ORCH_HFT_TOKEN', '')}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> HftUnderTest:
        self.starts += 1
        log = open(self.data_dir / f"process-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orch.workers.hft"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def log(self) -> str:
        return (self.data_dir / f"process-{self.starts}.log").read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"process exited ({self.process.returncode}) waiting for {what}:\n{self.log()}"
                )
            try:
                if predicate():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-3000:]}")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, headers=self.headers, params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, headers=self.headers, json=body, timeout=5)

    def state(self) -> dict[str, Any]:
        return self.get("/state")

    def wait_state(self, state: str, timeout: float = 20.0) -> None:
        self.wait_for(lambda: self.state()["state"] == state, timeout, f"state {state}")

    def sigkill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


@pytest.fixture
def hft(tmp_path: Path) -> Iterator[Callable[..., HftUnderTest]]:
    started: list[HftUnderTest] = []

    def make(**env: str) -> HftUnderTest:
        process = HftUnderTest(tmp_path, **env)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def running(hft: Callable[..., HftUnderTest]) -> HftUnderTest:
    process = hft(ORCH_HFT_MARKET_MAKING="false", ORCH_HFT_ARBITRAGE="false").start()
    process.wait_state("active")
    return process


# ---- The control API -----------------------------------------------------------------------------


def test_token_required(running: HftUnderTest) -> None:
    assert httpx.get(running.url + "/health").status_code == 200  # liveness needs no token
    missing = httpx.get(running.url + "/state")
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["error"]
    wrong = httpx.get(running.url + "/state", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["error"]
    schema = httpx.get(running.url + "/openapi.json").json()
    assert {"/kill", "/plans", "/heartbeat", "/fills"} <= set(schema["paths"])
    assert "StrategyPlan" in schema["components"]["schemas"]


def test_bad_payloads_get_clear_4xx(running: HftUnderTest) -> None:
    not_json = httpx.post(running.url + "/plans", headers=running.headers, content=b"{plans:")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    empty = httpx.post(running.url + "/kill", headers=running.headers)
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    missing = running.post("/plans", {"plans": [{"plan_id": "a", "symbol": "BTC/USD", "side": "buy"}]})
    assert missing.status_code == 422
    locations = {d["loc"] for d in missing.json()["details"]}
    assert {"plans.0.strategy", "plans.0.quantity", "plans.0.stop_loss"} <= locations
    level = running.post("/kill", {"level": "nuke", "reason": "x"})
    assert level.status_code == 422 and "level" in level.json()["error"]
    assert running.post("/kill", {"level": "none", "reason": "x"}).status_code == 422
    extra = running.post("/heartbeat", {"sender": "wf", "surprise": 1})
    assert extra.status_code == 422 and "surprise" in extra.json()["error"]
    cursor = httpx.get(running.url + "/fills", headers=running.headers, params={"since": "abc"})
    assert cursor.status_code == 400 and "since" in cursor.json()["error"]
    unknown = httpx.get(running.url + "/nowhere", headers=running.headers)
    assert unknown.status_code == 404 and "/nowhere" in unknown.json()["error"]
    limit = running.post(
        "/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 1, "order_type": "limit"}
    )
    assert limit.status_code == 422 and "limit_price" in limit.json()["error"]


def test_orders_plans_fills_and_kill_reach_halted(running: HftUnderTest) -> None:
    ack = running.post("/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 0.5}).json()
    assert ack["accepted"], ack
    running.wait_for(lambda: running.get("/fills")["fills"], what="the fill")
    page = running.get("/fills", since=0)
    assert page["fills"][0]["client_order_id"] == ack["order"]["client_order_id"]
    assert running.get("/fills", since=page["next_cursor"])["fills"] == []
    plan = {
        "plan_id": "plan-1",
        "symbol": "ETH/USD",
        "strategy": "generic",
        "side": "buy",
        "quantity": 1,
        "entry_price": 1.0,  # a limit far below the market: it waits, open
        "stop_loss": 0.5,
        "take_profit": 1_000_000,
        "valid_until": "2099-01-01T00:00:00Z",
    }
    assert running.post("/plans", {"plans": [plan]}).json() == {"accepted": ["plan-1"], "rejected": {}}
    running.wait_for(lambda: running.get("/orders"), what="the plan's entry order")
    halted = running.post("/kill", {"level": "halt", "reason": "test kill"}).json()
    assert halted["state"] == "halted" and halted["emergency_level"] == "halt"
    running.wait_for(lambda: running.get("/orders") == [], what="open orders cancelled")
    denied = running.post("/orders", {"symbol": "BTC/USD", "side": "sell", "quantity": 0.5}).json()
    assert not denied["accepted"] and denied["decision"]["reason"] == "halted"
    resumed = running.post("/resume", {"reason": "test over"}).json()
    assert resumed["state"] == "active"


def test_sigusr1_halts_at_once(running: HftUnderTest) -> None:
    assert running.process is not None
    running.process.send_signal(signal.SIGUSR1)
    running.wait_state("halted", timeout=5)
    assert "SIGUSR1" in running.state()["reason"]


def test_refuses_to_listen_beyond_loopback_without_a_token(hft: Callable[..., HftUnderTest]) -> None:
    process = hft(ORCH_HFT_HOST="0.0.0.0", ORCH_HFT_TOKEN="")
    process.env.pop("ORCH_HFT_TOKEN")
    process.start()
    assert process.process is not None
    assert process.process.wait(30) == 2
    assert "refusing to listen on 0.0.0.0 without ORCH_HFT_TOKEN" in process.log()


def test_dead_mans_switch(hft: Callable[..., HftUnderTest]) -> None:
    process = hft(
        ORCH_HFT_MARKET_MAKING="false",
        ORCH_HFT_ARBITRAGE="false",
        ORCH_HFT_DEADMAN_REQUIRE_HEARTBEAT="true",
        ORCH_HFT_DEADMAN_REDUCING_AFTER_SECONDS="0.8",
        ORCH_HFT_DEADMAN_HALT_AFTER_SECONDS="2.0",
    ).start()

    def beat() -> bool:
        return process.post("/heartbeat", {"sender": "test"}).json()["state"] == "active"

    process.wait_for(beat, what="active with heartbeats")
    process.wait_state("reducing", timeout=5)  # heartbeats stopped
    assert "dead man's switch" in process.state()["reason"]
    process.wait_for(beat, timeout=5, what="a heartbeat lifting the switch's REDUCING")
    process.wait_state("reducing", timeout=5)
    process.wait_state("halted", timeout=5)
    assert "dead man's switch" in process.state()["reason"]
    assert process.post("/heartbeat", {"sender": "test"}).json()["state"] == "halted"  # needs a resume


def test_busy_trading_is_not_mistaken_for_a_reconciliation_difference(
    hft: Callable[..., HftUnderTest], tmp_path: Path
) -> None:
    """Fills arrive between the periodic pass's looks at the broker; they are in flight, not missed."""
    process = hft(ORCH_HFT_RECONCILE_INTERVAL_SECONDS="0.1", ORCH_HFT_TICK_RATE="5000").start()
    process.wait_state("active")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert process.state()["state"] == "active", process.state()["reason"]
        time.sleep(0.05)
    fills = read_rows(tmp_path / "t1-journal.sqlite", "SELECT COUNT(*) FROM fills")[0][0]
    differences = read_rows(
        tmp_path / "t1-journal.sqlite", "SELECT detail FROM events WHERE kind = 'reconcile_difference'"
    )
    assert fills > 50 and differences == []


# ---- Crash safety --------------------------------------------------------------------------------


def read_rows(path: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def assert_journal_agrees_with_venue(journal: Path, venue: Path) -> None:
    journal_orders = {
        row[0]: row[1:]
        for row in read_rows(
            journal, "SELECT client_order_id, status, filled_quantity, reject_reason FROM orders"
        )
    }
    venue_orders = {
        row[0]: row[1:]
        for row in read_rows(venue, "SELECT client_order_id, status, filled_quantity FROM orders")
    }
    # No order the venue has is unknown to the journal, and none was sent twice (ids are the key).
    assert set(venue_orders) <= set(journal_orders)
    sequences = [r[0] for r in read_rows(journal, "SELECT sequence FROM orders WHERE sequence IS NOT NULL")]
    assert len(sequences) == len(set(sequences))
    for client_order_id, (status, filled, reason) in journal_orders.items():
        if client_order_id not in venue_orders:
            assert status == "rejected" and reason == "never reached the broker", client_order_id
            continue
        venue_status, venue_filled = venue_orders[client_order_id]
        assert (status, filled) == pytest.approx((venue_status, venue_filled)), client_order_id
    # No fill lost: per order, the journal's fills add up to the venue's.
    journal_fills = dict(read_rows(journal, "SELECT client_order_id, SUM(quantity) FROM fills GROUP BY 1"))
    venue_fills = dict(read_rows(venue, "SELECT client_order_id, SUM(quantity) FROM fills GROUP BY 1"))
    assert journal_fills.keys() == venue_fills.keys()
    for client_order_id, quantity in venue_fills.items():
        assert journal_fills[client_order_id] == pytest.approx(quantity)
    # Positions equal the broker's.
    journal_positions = dict(read_rows(journal, "SELECT symbol, quantity FROM positions WHERE quantity != 0"))
    venue_positions = dict(read_rows(venue, "SELECT symbol, quantity FROM positions WHERE quantity != 0"))
    assert journal_positions == pytest.approx(venue_positions)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    hft: Callable[..., HftUnderTest], tmp_path: Path
) -> None:
    process = hft(
        ORCH_HFT_TICK_RATE="5000",
        ORCH_HFT_TIER1_MIN_REQUOTE_SECONDS="0.0005",
        ORCH_HFT_MM_REQUOTE_BPS="0",
        ORCH_HFT_SIM_MAX_FILL_FRACTION="0.5",
        ORCH_HFT_MM_QUOTE_QUANTITY="3",
        ORCH_HFT_MM_INVENTORY_LIMIT="1000",
    ).start()
    process.wait_state("active")
    process.wait_for(
        lambda: process.get("/metrics")["orders_sent_total"] > 300 and process.get("/fills")["fills"],
        what="a stream of orders and fills",
    )
    process.sigkill()  # mid-stream: orders are being written, sent, filled and cancelled

    sent_before = read_rows(tmp_path / "t1-journal.sqlite", "SELECT COUNT(*) FROM orders")[0][0]
    process.start()
    process.wait_for(lambda: process.state()["reconciled"], what="reconciliation")
    process.wait_for(
        lambda: process.get("/metrics")["orders_sent_total"] > 50, what="trading again after the restart"
    )
    halted = process.post("/kill", {"level": "halt", "reason": "end of test"}).json()
    assert halted["state"] == "halted"
    process.wait_for(lambda: process.get("/orders") == [], what="open orders cancelled")
    time.sleep(0.1)  # let the last fill sync run
    assert process.stop() == 0

    journal, venue = tmp_path / "t1-journal.sqlite", tmp_path / "t1-venue.sqlite"
    assert read_rows(journal, "SELECT COUNT(*) FROM orders")[0][0] > sent_before > 300
    assert len(read_rows(journal, "SELECT * FROM events WHERE kind='reconciled'")) == 2
    assert_journal_agrees_with_venue(journal, venue)
    differences = [
        json.loads(d)
        for (d,) in read_rows(journal, "SELECT detail FROM events WHERE kind='reconcile_difference'")
    ]
    kinds = sorted({d["kind"] for d in differences})
    print(f"{sent_before} orders before the SIGKILL; reconciliation differences: {len(differences)} {kinds}")
    assert "position" not in kinds  # positions came right from the fills alone, nothing was papered over


async def test_hft_client_typed_calls(running: HftUnderTest) -> None:
    from datetime import UTC, datetime, timedelta

    from orch.contracts.system import EmergencyLevel
    from orch.contracts.trading import OrderIntent, Side, StrategyKind, StrategyPlan, TradingState
    from orch.hft.client import HftApiError, HftClient, HftUnavailable

    async with HftClient(running.url, token=TOKEN, timeout_seconds=5) as client:
        assert (await client.heartbeat("test")).state is TradingState.ACTIVE
        plan = StrategyPlan(
            plan_id="client-plan",
            symbol="BTC/USD",
            strategy=StrategyKind.GENERIC,
            side=Side.BUY,
            quantity=0.1,
            entry_price=1.0,
            stop_loss=0.5,
            take_profit=10_000_000,
            valid_until=datetime.now(UTC) + timedelta(hours=1),
        )
        assert (await client.send_plans([plan])).accepted == ["client-plan"]
        ack = await client.submit_order(OrderIntent(symbol="BTC/USD", side=Side.BUY, quantity=0.1))
        assert ack.accepted and ack.order is not None, ack.decision
        status = await client.status()
        assert status.account == "t1" and status.trading.reconciled
        assert (await client.kill(EmergencyLevel.HALT, "client test")).state is TradingState.HALTED
        with pytest.raises(HftApiError) as refused:
            await client.cancel_order("no-such-order")
        assert refused.value.status == 404
        assert (await client.resume("client test over")).state is TradingState.ACTIVE
    async with HftClient(running.url, token="wrong") as client:
        with pytest.raises(HftApiError) as unauthorised:
            await client.state()
        assert unauthorised.value.status == 401
    async with HftClient(f"http://127.0.0.1:{free_port()}", token=TOKEN, timeout_seconds=1) as client:
        with pytest.raises(HftUnavailable):
            await client.health()


# ---- The daily-loss breaker across a crash -------------------------------------------------------


def filled_order(process: HftUnderTest, side: str, quantity: float) -> dict[str, Any]:
    """A market order through the gate, waited on until the journal has it filled."""
    ack = process.post("/orders", {"symbol": "BTC/USD", "side": side, "quantity": quantity}).json()
    assert ack["accepted"], f"{side} {quantity} refused: {ack['decision']}"
    client_order_id = ack["order"]["client_order_id"]

    def filled() -> dict[str, Any] | None:
        for order in process.get("/orders", open="false", limit=50):
            if order["client_order_id"] == client_order_id and order["status"] == "filled":
                return order
        return None

    process.wait_for(lambda: filled() is not None, what=f"{side} {quantity} BTC/USD filled")
    return filled()  # type: ignore[return-value]


def test_sigkill_after_most_of_the_days_loss_then_one_more_loss_trips_the_breaker(
    hft: Callable[..., HftUnderTest],
) -> None:
    limit = 1_000.0
    process = hft(
        ORCH_HFT_MARKET_MAKING="false",
        ORCH_HFT_ARBITRAGE="false",
        ORCH_HFT_SYMBOLS='["BTC/USD"]',
        ORCH_HFT_MM_SYMBOLS='["BTC/USD"]',
        # 5 % slippage each way: every round trip loses about 10 % of its notional, whatever the
        # random walk does in the few milliseconds between its two legs.
        ORCH_HFT_SIM_SLIPPAGE_BPS="500",
        ORCH_HFT_RISK__MAX_DAILY_LOSS=str(limit),
    ).start()
    process.wait_state("active")

    def day() -> tuple[float, float]:
        status = process.get("/status")
        return status["realized_pnl"], status["risk"]["daily_pnl"]

    # Lose about 90 % of the limit in round trips sized from the last fill's price, never past it.
    quantity = 0.002
    while day()[1] > -0.88 * limit:
        bought = filled_order(process, "buy", quantity)
        filled_order(process, "sell", quantity)
        gap = 0.9 * limit + day()[1]
        quantity = max(round(0.9 * gap / (0.1 * bought["average_fill_price"]), 4), 0.0001)
    realized, daily = day()
    assert -limit < daily <= -0.88 * limit and realized == pytest.approx(daily)
    assert process.state()["state"] == "active", process.state()["reason"]

    process.sigkill()
    process.start()
    process.wait_for(lambda: process.state()["reconciled"], what="reconciliation after the restart")
    assert day() == pytest.approx((realized, daily), abs=0.01), "the day's losses survive a SIGKILL"
    assert process.state()["state"] == "active", process.state()["reason"]

    # One more losing round trip worth about 20 % of the limit: the day's total passes it.
    quantity = round(0.2 * limit / (0.1 * bought["average_fill_price"]), 4)
    ack = process.post("/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": quantity}).json()
    assert ack["accepted"], f"buy refused: {ack['decision']}"
    process.wait_for(lambda: process.get("/positions"), what="the buy's fill")
    # The buy's 5 % slippage is already an unrealized loss of about 10 % of the limit; the sell
    # realizes the rest, unless the breaker has tripped first.
    process.post("/orders", {"symbol": "BTC/USD", "side": "sell", "quantity": quantity})
    process.wait_state("halted", timeout=20)
    state = process.state()
    assert "daily loss breaker" in state["reason"], state["reason"]


# ---- The kill does what its level requires, by itself --------------------------------------------


def resting(process: HftUnderTest, symbol: str, side: str, quantity: float, limit_price: float) -> str:
    """A limit order far from the market, open until someone cancels it."""
    intent = {"symbol": symbol, "side": side, "quantity": quantity, "order_type": "limit"}
    ack = process.post("/orders", {**intent, "limit_price": limit_price}).json()
    assert ack["accepted"], f"{side} {quantity} {symbol} refused: {ack['decision']}"
    return ack["order"]["client_order_id"]


def open_ids(process: HftUnderTest) -> set[str]:
    return {o["client_order_id"] for o in process.get("/orders")}


@pytest.mark.parametrize(
    ("level", "state", "keeps_the_reduction"),
    [
        ("pause_entries", "active", True),
        ("reduce_only", "reducing", True),
        ("halt", "halted", False),
        ("flatten", "halted", False),
    ],
)
def test_the_kill_itself_cancels_what_its_level_forbids_and_keeps_what_it_allows(
    running: HftUnderTest, level: str, state: str, keeps_the_reduction: bool
) -> None:
    """No workflow: POST /kill alone. Long 3 ETH/USD; resting: a BTC/USD buy (opens a position), an
    ETH/USD buy (grows it) and an ETH/USD sell of the whole position (shrinks it to flat)."""
    filled_order_of(running, "ETH/USD", "buy", 3)
    mark = next(p["market_price"] for p in running.get("/positions") if p["symbol"] == "ETH/USD")
    opens = resting(running, "BTC/USD", "buy", 0.01, 1.0)
    grows = resting(running, "ETH/USD", "buy", 0.5, 1.0)
    shrinks = resting(running, "ETH/USD", "sell", 3, float(round(10 * mark)))
    running.wait_for(lambda: open_ids(running) == {opens, grows, shrinks}, what="three resting orders")

    answer = running.post("/kill", {"level": level, "reason": "the kill alone"}).json()
    assert answer["emergency_level"] == level
    forbidden = {opens, grows} if keeps_the_reduction else {opens, grows, shrinks}
    assert set(answer["cancelled"]) == forbidden
    assert answer["settlement"]["orders"] == []  # the simulated venue cancels at once
    if level == "flatten":
        assert answer["state"] == "reducing" and list(answer["settlement"]["positions"]) == ["ETH/USD"]
    else:
        assert answer["state"] == state and answer["settlement"]["positions"] == {}
    assert open_ids(running) == (forbidden ^ {opens, grows, shrinks})
    cancelled = {
        o["client_order_id"] for o in running.get("/orders", open="false") if o["status"] == "cancelled"
    }
    assert cancelled == forbidden  # journaled as cancelled, the allowed one untouched
    if level == "flatten":
        running.wait_state("halted")
        assert [p for p in running.get("/positions") if p["quantity"]] == []
        assert open_ids(running) == set()
    else:
        time.sleep(3 * 0.2)  # a few of orch hft's enforcement passes: the allowed order stays
        assert open_ids(running) == (forbidden ^ {opens, grows, shrinks})
        assert running.state()["state"] == state


def filled_order_of(process: HftUnderTest, symbol: str, side: str, quantity: float) -> None:
    ack = process.post("/orders", {"symbol": symbol, "side": side, "quantity": quantity}).json()
    assert ack["accepted"], f"{side} {quantity} {symbol} refused: {ack['decision']}"
    process.wait_for(
        lambda: any(p["symbol"] == symbol and p["quantity"] for p in process.get("/positions")),
        what=f"{side} {quantity} {symbol} filled",
    )
