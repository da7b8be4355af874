"""`orch hft --market alpaca --broker alpaca` end to end against the fake Alpaca server in its own process.

The fake runs as a separate process so that it, like the real Alpaca, outlives the hft process
being SIGKILLed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orch.fake_alpaca.broker import FillPolicy
from orch.fake_alpaca.rules import Rule
from orch.fake_alpaca.server import FakeAlpacaSubprocess
from tests import test_hft_process as harness
from tests.test_hft_process import HftUnderTest, read_rows

hft = harness.hft  # the same fixture: starts hft processes and stops every one of them

SYMBOLS = '["BTC/USD", "ETH/USD"]'


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpacaSubprocess]:
    with FakeAlpacaSubprocess(fill_policy=FillPolicy.partial(2, 0.1), tick_interval_seconds=0.05) as server:
        server.admin.set_price("BTC/USD", 60_000)
        server.admin.set_price("ETH/USD", 3_000)
        yield server


def alpaca_env(fake: FakeAlpacaSubprocess) -> dict[str, str]:
    return {
        "ORCH_HFT_MARKET": "alpaca",
        "ORCH_HFT_BROKER": "alpaca",
        "ALPACA_API_KEY": fake.key,
        "ALPACA_SECRET_KEY": fake.secret,
        "ORCH_HFT_ALPACA_TRADING_URL": fake.trading_url,
        "ORCH_HFT_ALPACA_STREAM_URL": fake.stream_url,
        "ORCH_HFT_ALPACA_CRYPTO_STREAM_URL": fake.crypto_stream_url,
        "ORCH_HFT_ALPACA_POLL_SECONDS": "0.1",
        "ORCH_HFT_BROKER_TIMEOUT_SECONDS": "3",
        "ORCH_HFT_SYMBOLS": SYMBOLS,
        "ORCH_HFT_MARKET_MAKING": "false",
        "ORCH_HFT_ARBITRAGE": "false",
    }


def test_order_through_the_process_reaches_alpaca_and_its_fill_comes_back(
    hft: Callable[..., HftUnderTest], fake_alpaca: FakeAlpacaSubprocess
) -> None:
    process = hft(**alpaca_env(fake_alpaca)).start()
    process.wait_state("active")
    process.wait_for(lambda: process.get("/metrics")["ticks_total"] > 0, what="quotes from the Alpaca stream")
    ack = process.post("/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 0.2}).json()
    assert ack["accepted"], ack
    client_order_id = ack["order"]["client_order_id"]

    def at_fake() -> list[dict]:
        return [o for o in fake_alpaca.admin.state()["orders"] if o["client_order_id"] == client_order_id]

    process.wait_for(lambda: at_fake(), what="the order at the fake Alpaca")
    process.wait_for(
        lambda: sum(f["quantity"] for f in process.get("/fills")["fills"]) == pytest.approx(0.2),
        what="both partial fills in the journal",
    )
    (fake_order,) = at_fake()
    assert fake_order["status"] == "filled"
    (position,) = process.get("/positions")
    (held_at_alpaca,) = fake_alpaca.admin.state()["positions"]
    # 0.2 bought as taker: Alpaca keeps 0.25 % of the BTC as its fee, and so does the journal.
    assert float(held_at_alpaca["qty"]) == pytest.approx(0.1995)
    assert position["symbol"] == "BTC/USD" and position["quantity"] == pytest.approx(0.1995)
    journal_fill_value = sum(f["quantity"] * f["price"] for f in process.get("/fills")["fills"])
    assert journal_fill_value == pytest.approx(0.2 * float(fake_order["filled_avg_price"]))


def test_sigkill_mid_stream_with_alpaca(
    hft: Callable[..., HftUnderTest], fake_alpaca: FakeAlpacaSubprocess, tmp_path: Path
) -> None:
    # This test is about crash safety. orch hft does not yet keep Alpaca's request budget, avoid
    # crossing its own orders, or book crypto fees taken from the asset (issue 9's later steps),
    # so the stream of alternating orders would be refused for those and the positions would
    # differ by the fees: the fake relaxes exactly these rules here.
    fake_alpaca.admin.relax_rules([Rule.RATE_LIMIT, Rule.WASH_TRADE, Rule.CRYPTO_FEE])
    process = hft(**alpaca_env(fake_alpaca)).start()
    process.wait_state("active")
    process.wait_for(lambda: process.get("/metrics")["ticks_total"] > 0, what="quotes from the Alpaca stream")
    stop = threading.Event()
    sent: list[str] = []
    refusals: list[dict] = []

    def stream_of_orders() -> None:
        side = "buy"
        with httpx.Client(base_url=process.url, headers=process.headers, timeout=2) as client:
            while not stop.is_set():
                try:
                    body = {"symbol": "ETH/USD", "side": side, "quantity": 0.5 if side == "buy" else 0.3}
                    answer = client.post("/orders", json=body).json()
                except (httpx.HTTPError, ValueError):
                    return  # the process is gone
                if answer.get("accepted"):
                    sent.append(answer["order"]["client_order_id"])
                else:
                    refusals.append(answer.get("decision") or answer)
                side = "sell" if side == "buy" else "buy"

    sender = threading.Thread(target=stream_of_orders)
    sender.start()
    try:
        process.wait_for(lambda: len(sent) >= 20, what=f"a stream of orders (refusals: {refusals[-3:]})")
        process.sigkill()
    finally:
        stop.set()
        sender.join(10)

    process.start()
    process.wait_for(lambda: process.state()["reconciled"], what="reconciliation")
    process.wait_state("active")
    for _ in range(3):
        accepted_once_priced(process, {"symbol": "ETH/USD", "side": "buy", "quantity": 0.1})
    process.wait_for(
        lambda: all(o["status"] == "filled" for o in fake_alpaca.admin.state()["orders"]),
        what="every fill at the fake",
    )
    process.wait_for(
        lambda: not process.get("/orders") and _journal_matches(process, fake_alpaca),
        what="the journal to agree with the fake Alpaca",
    )
    assert process.stop() == 0

    journal = tmp_path / "t1-journal.sqlite"
    fake_orders = {o["client_order_id"]: o for o in fake_alpaca.admin.state()["orders"]}
    journal_orders = {
        cid: (status, filled)
        for cid, status, filled in read_rows(
            journal, "SELECT client_order_id, status, filled_quantity FROM orders"
        )
    }
    assert set(fake_orders) <= set(journal_orders)  # nothing at the broker that the journal lacks
    assert len(fake_orders) == len({o["id"] for o in fake_orders.values()})  # and nothing sent twice
    for cid, (status, filled) in journal_orders.items():
        if cid in fake_orders:
            assert filled == pytest.approx(float(fake_orders[cid]["filled_qty"])), cid
        else:
            assert status == "rejected", cid  # written, then the crash came before it was sent
    assert len(read_rows(journal, "SELECT * FROM events WHERE kind='reconciled'")) == 2


def accepted_once_priced(process: HftUnderTest, body: dict) -> dict:
    """Submit `body` once the restarted process has a quote to value it by.

    Reconciliation does not wait for the stream's first quote, so the gate may still answer
    no_price; that refusal changes nothing, so the order is simply sent again. Any other refusal
    fails the test with its reason.
    """
    answers: list[dict] = []

    def accepted() -> bool:
        answers.append(process.post("/orders", body).json())
        decision = answers[-1]["decision"]
        assert answers[-1]["accepted"] or decision["reason"] == "no_price", f"refused: {decision}"
        return answers[-1]["accepted"]

    process.wait_for(
        accepted, what=f"{body} accepted: the gate kept answering no_price (no quote since the restart)"
    )
    return answers[-1]


def _journal_matches(process: HftUnderTest, fake: FakeAlpacaSubprocess) -> bool:
    positions = {p["symbol"]: p["quantity"] for p in process.get("/positions")}
    state = fake.admin.state()
    theirs = {p["symbol"]: float(p["qty"]) for p in state["positions"]}
    theirs = {
        ("ETH/USD" if s == "ETHUSD" else "BTC/USD" if s == "BTCUSD" else s): q for s, q in theirs.items()
    }
    return positions == pytest.approx(theirs)


def test_wrong_keys_halt_the_process_at_once_and_are_not_retried(
    hft: Callable[..., HftUnderTest], fake_alpaca: FakeAlpacaSubprocess
) -> None:
    process = hft(**(alpaca_env(fake_alpaca) | {"ALPACA_SECRET_KEY": "wrong-secret"})).start()
    process.wait_state("halted")
    state = process.state()
    assert state["reason"] == "halt: broker refused the credentials (HTTP 401)", state
    assert not state["reconciled"], state  # so a resume is refused until the keys are right
    status = process.get("/status")
    assert status["request_budget"]["limit_per_minute"] == 190, status["request_budget"]
    # Before this, a 401 was 'broker unreachable' and retried forever: one request, then none.
    assert status["request_budget"]["used_last_minute"] == 1, status["request_budget"]
