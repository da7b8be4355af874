"""The control API of a real `orch hft` process: strict bodies, instrument rules, and a published schema
that the server agrees with (checked by schemathesis against the live process)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests import test_hft_process as harness
from tests.test_hft_process import TOKEN, HftUnderTest

hft = harness.hft  # the same fixture: starts hft processes and stops every one of them


@pytest.fixture
def running(hft: Callable[..., HftUnderTest]) -> HftUnderTest:
    process = hft(
        ORCH_HFT_MARKET_MAKING="false",
        ORCH_HFT_ARBITRAGE="false",
        ORCH_HFT_SYMBOLS='["BTC/USD", "AAPL"]',
        ORCH_HFT_MM_SYMBOLS='["BTC/USD"]',
    ).start()
    process.wait_state("active")
    process.wait_for(lambda: process.get("/metrics")["ticks_total"] > 0, what="the first quotes")
    return process


def raw_post(process: HftUnderTest, path: str, content: str, content_type: str = "application/json"):
    headers = {**process.headers, "Content-Type": content_type}
    return httpx.post(process.url + path, headers=headers, content=content.encode(), timeout=5)


def everything(process: HftUnderTest) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    state = process.state()
    return (
        state["state"],
        state["emergency_level"],
        process.get("/orders", open="false", limit=10_000),
        process.get("/plans"),
    )


# ---- Item 13: strict bodies ----------------------------------------------------------------------


def test_lax_values_and_non_json_bodies_are_refused_and_change_nothing(running: HftUnderTest) -> None:
    before = everything(running)
    refused = {
        "quantity as a string": raw_post(
            running, "/orders", '{"symbol": "BTC/USD", "side": "buy", "quantity": "0.001"}'
        ),
        "reduce_only as 0": raw_post(
            running, "/orders", '{"symbol": "BTC/USD", "side": "buy", "quantity": 0.001, "reduce_only": 0}'
        ),
        "an order as text/plain": raw_post(
            running, "/orders", '{"symbol": "BTC/USD", "side": "buy", "quantity": 0.001}', "text/plain"
        ),
        "a kill as text/plain": raw_post(running, "/kill", '{"level": "halt", "reason": "x"}', "text/plain"),
        "a heartbeat's time as a number in a string": raw_post(running, "/heartbeat", '{"sent_at": "5"}'),
        "requested_by as a number": raw_post(running, "/resume", '{"reason": "x", "requested_by": 1}'),
    }
    for what, response in refused.items():
        assert response.status_code in (415, 422), f"{what} was not refused: {response.text}"
    assert refused["an order as text/plain"].status_code == 415
    assert "application/json" in refused["an order as text/plain"].json()["error"]
    assert "quantity" in refused["quantity as a string"].json()["error"]
    assert "reduce_only" in refused["reduce_only as 0"].json()["error"]
    assert everything(running) == before, "a refused request changed something"
    # The same order, well formed, goes through: the refusals were about form alone.
    ack = running.post(
        "/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 0.001, "reduce_only": False}
    )
    assert ack.json()["accepted"], ack.text


# ---- Item 14: dust, infinities, unknown symbols --------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "words"),
    [
        ("1e-12", "below BTC/USD's minimum"),
        ("1e-300", "below BTC/USD's minimum"),
        ("1e308", "above BTC/USD's maximum"),
        ("1e400", "finite number"),
        ("Infinity", "finite number"),
        ("NaN", "finite number"),
        ("0.123456789", "not a multiple of BTC/USD's increment"),
    ],
)
def test_dust_and_infinite_quantities_are_refused(running: HftUnderTest, quantity: str, words: str) -> None:
    before = everything(running)
    response = raw_post(running, "/orders", f'{{"symbol": "BTC/USD", "side": "buy", "quantity": {quantity}}}')
    assert response.status_code == 422 and words in response.json()["error"], response.text
    assert everything(running) == before


def test_the_smallest_quantity_fills_and_is_journaled_as_filled(running: HftUnderTest) -> None:
    """The other side of the minimum: 1e-8 BTC is an order, and the journal keeps what the venue filled."""
    ack = running.post("/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 1e-8}).json()
    assert ack["accepted"], ack["decision"]
    client_order_id = ack["order"]["client_order_id"]

    def journaled() -> dict[str, Any]:
        return next(
            o for o in running.get("/orders", open="false") if o["client_order_id"] == client_order_id
        )

    running.wait_for(lambda: journaled()["status"] == "filled", what="the 1e-8 BTC order filled")
    assert journaled()["filled_quantity"] == pytest.approx(1e-8, rel=1e-9)
    assert running.get("/positions")[0]["quantity"] == pytest.approx(1e-8, rel=1e-9)
    # Reconciliation agrees with the venue (it used to find a difference and go REDUCING).
    passes = running.get("/metrics")["ticks_total"]
    running.wait_for(
        lambda: running.get("/metrics")["ticks_total"] > passes + 2_000, what="time for a few passes"
    )
    assert running.state()["state"] == "active", running.state()["reason"]


def test_prices_must_be_on_the_grid(running: HftUnderTest) -> None:
    def limit_order(symbol: str, price: float) -> httpx.Response:
        body = {"symbol": symbol, "side": "buy", "quantity": 1, "order_type": "limit", "limit_price": price}
        return running.post("/orders", body)

    for symbol, price in (("AAPL", 100.005), ("AAPL", 0.12345), ("BTC/USD", 1.001)):
        response = limit_order(symbol, price)
        assert response.status_code == 422 and "price increment" in response.json()["error"], response.text
    for symbol, price in (("AAPL", 100.01), ("AAPL", 0.1234), ("BTC/USD", 1.01)):
        response = limit_order(symbol, price)
        assert response.status_code == 200, response.text
        assert response.json()["decision"]["reason"] != "invalid_order", response.text


def test_unknown_and_huge_symbols_are_refused_without_echoing_them(running: HftUnderTest) -> None:
    unknown = running.post("/orders", {"symbol": "DOGE/USD", "side": "buy", "quantity": 1})
    assert unknown.status_code == 422, unknown.text
    assert "unknown symbol 'DOGE/USD'" in unknown.json()["error"] and "BTC/USD" in unknown.json()["error"]
    huge = "X" * 100_000
    for response in (
        running.post("/orders", {"symbol": huge, "side": "buy", "quantity": 1}),
        running.post(
            "/plans",
            {
                "plans": [
                    {
                        "plan_id": "p",
                        "symbol": huge,
                        "strategy": "generic",
                        "side": "buy",
                        "quantity": 1,
                        "stop_loss": 1,
                        "take_profit": 2,
                        "valid_until": "2099-01-01T00:00:00Z",
                    }
                ]
            },
        ),
        httpx.delete(running.url + "/orders/" + huge[:8000], headers=running.headers),
        httpx.get(running.url + "/" + huge[:8000], headers=running.headers),
    ):
        assert response.status_code < 500, response.text[:300]
        assert len(response.content) < 1_000, f"{response.status_code}: {len(response.content)} bytes echoed"


def test_a_market_order_may_not_carry_a_limit_price(running: HftUnderTest) -> None:
    """The gate would value it at that price: 0.01 would let 1,000 BTC pass as a 10-dollar order."""
    response = running.post(
        "/orders", {"symbol": "BTC/USD", "side": "buy", "quantity": 1_000, "limit_price": 0.01}
    )
    assert response.status_code == 422 and "market order takes no limit_price" in response.text, response.text


# ---- Item 15: the schema and the server agree ----------------------------------------------------


def test_405_names_the_allowed_methods(running: HftUnderTest) -> None:
    response = httpx.delete(running.url + "/state", headers=running.headers)
    assert response.status_code == 405, response.text
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}, response.headers


def test_what_the_schema_allows_is_what_the_server_takes(running: HftUnderTest) -> None:
    schema = httpx.get(running.url + "/openapi.json").json()
    orders = schema["paths"]["/orders"]["get"]
    limit = next(p for p in orders["parameters"] if p["name"] == "limit")["schema"]
    assert limit["minimum"] == 1 and "400" in orders["responses"]
    assert httpx.get(running.url + "/orders", headers=running.headers, params={"limit": 0}).status_code == 400
    assert httpx.get(running.url + "/orders", headers=running.headers, params={"limit": 1}).status_code == 200
    kill = schema["components"]["schemas"]["KillRequest"]["properties"]["level"]
    assert kill["not"] == {"const": "none"}  # a kill at none is no kill: documented and refused
    assert running.post("/kill", {"level": "none", "reason": "x"}).status_code == 422
    intent = schema["components"]["schemas"]["OrderIntent"]
    assert intent["properties"]["symbol"]["enum"] == ["BTC/USD", "AAPL"]
    assert intent["then"]["required"] == ["limit_price"]
    no_price = {"symbol": "BTC/USD", "side": "buy", "quantity": 1, "order_type": "limit", "limit_price": None}
    assert running.post("/orders", no_price).status_code == 422
    market = {
        "symbol": "BTC/USD",
        "side": "buy",
        "quantity": 0.001,
        "order_type": "market",
        "limit_price": None,
    }
    assert running.post("/orders", market).json()["accepted"]
    cancel = schema["paths"]["/orders/{client_order_id}"]["delete"]["responses"]
    assert {"202", "401", "404"} <= set(cancel)


@pytest.mark.timeout(180)
def test_schemathesis_finds_no_disagreement(running: HftUnderTest, tmp_path: harness.Path) -> None:
    """Every operation, generated from the published schema, against the live process."""
    st = shutil.which("st", path=str(harness.Path(harness.sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: its 'st' command should be in the venv"
    result = subprocess.run(
        [
            st,
            "run",
            running.url + "/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,  # schemathesis keeps a cache folder in its working directory
    )
    report = result.stdout[-6_000:]
    assert result.returncode == 0, f"schemathesis found disagreements:\n{report}\n{result.stderr[-2_000:]}"
    # The run really happened: every operation tested, and cases generated and passed.
    summary = re.search(r"(\d+) generated, (\d+) passed", report)
    operations = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert operations and operations[1] == operations[2] == operations[3], report
    assert summary and int(summary[1]) > 100, report


# ---- Issue 10, item 3: refusals carry a machine-readable code -------------------------------------


def test_every_refusal_carries_its_code_and_the_client_raises_it(running: HftUnderTest) -> None:
    import asyncio

    from orch.contracts.errors import RefusalCode
    from orch.hft.client import HftApiError, HftClient

    answers = {
        RefusalCode.MALFORMED_REQUEST: raw_post(running, "/orders", "{not json"),
        RefusalCode.UNSUPPORTED_MEDIA_TYPE: raw_post(running, "/orders", "{}", "text/plain"),
        RefusalCode.INVALID_BODY: raw_post(running, "/orders", '{"symbol": "BTC/USD"}'),
        RefusalCode.NO_SUCH_ROUTE: httpx.get(running.url + "/nowhere", headers=running.headers, timeout=5),
        RefusalCode.UNAUTHORIZED: httpx.get(running.url + "/state", timeout=5),
    }
    for code, answer in answers.items():
        assert answer.json()["code"] == code.value, (code, answer.text)

    async def cancel_unknown() -> HftApiError:
        async with HftClient(running.url, token=TOKEN) as client:
            with pytest.raises(HftApiError) as raised:
                await client.cancel_order("never-sent")
        return raised.value

    refused = asyncio.run(cancel_unknown())
    assert refused.status == 404 and refused.code is RefusalCode.NO_SUCH_ORDER
    assert "never-sent" in refused.message  # the human message stays beside the code
