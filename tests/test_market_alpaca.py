"""`AlpacaMarketData` against the fake Alpaca server: the same bars as the simulated market behind it,
keys from the environment and nowhere else, and a bounded wait whatever the server does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from orch.fake_alpaca import FakeAlpacaServer
from orch.fake_alpaca.spec_schemas import load, spec_violations
from orch.market.alpaca import AlpacaMarketData
from orch.market.base import MarketDataError, UnknownSymbolError
from orch.market.simulated import SimulatedMarket

FRIDAY_EVENING = datetime(2025, 3, 7, 22, 0, tzinfo=UTC)  # after the close: Friday's bars have ended
SATURDAY_NOON = datetime(2025, 3, 8, 12, 0, tzinfo=UTC)
TIMEOUT = 0.5  # for the tests of a server that does not answer: one such wait, never a retried chain
# A request that should be answered gets all the time a loaded machine needs: 1,000 minute bars took
# over 0.5 s in a full-suite run on this 2-core machine.
ANSWER_TIMEOUT = 10.0
# "One timeout, not forever": far above one 0.5 s wait on a loaded machine, far below a retried chain.
GIVES_UP_WITHIN = 10.0


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(key="key-id", secret="very-secret") as running:
        yield running
        problems = spec_violations(load(), running.fake.served_responses())
    assert not problems, "answers that break Alpaca's spec:\n" + "\n".join(problems)


@pytest.fixture
def keys(server: FakeAlpacaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", server.key)
    monkeypatch.setenv("ALPACA_SECRET_KEY", server.secret)


def source(
    server: FakeAlpacaServer, timeframe: str = "1D", timeout: float = ANSWER_TIMEOUT, **options
) -> AlpacaMarketData:
    return AlpacaMarketData(
        timeframe=timeframe, url_override=server.data_url, timeout_seconds=timeout, **options
    )


def test_daily_bars_match_the_simulated_market_behind_the_fake(server, keys) -> None:
    alpaca = source(server)
    simulated = SimulatedMarket(seed=server.config.seed, timeframe="1D")
    assert alpaca.name == "alpaca"
    assert alpaca.universe() == simulated.universe()

    for end in (FRIDAY_EVENING, SATURDAY_NOON):
        got, expected = alpaca.history("AAPL", 30, end), simulated.history("AAPL", 30, end)
        assert len(got) == 30
        assert np.array_equal(got.timestamps, expected.timestamps)
        assert np.allclose(got.close, expected.close, atol=1e-4)
        assert np.allclose(got.volume, expected.volume, atol=1)

    # Before the close, Friday's bar is still running and is left out; crypto's day ends at midnight UTC.
    assert alpaca.history("AAPL", 1, datetime(2025, 3, 7, 18, 0, tzinfo=UTC)).timestamps[-1] == np.datetime64(
        "2025-03-06"
    )
    crypto = alpaca.history("BTC/USD", 10, SATURDAY_NOON)
    assert crypto.timestamps[-1] == np.datetime64("2025-03-07")
    assert np.allclose(crypto.close, simulated.history("BTC/USD", 10, SATURDAY_NOON).close, rtol=1e-6)


def test_minute_bars(server, keys) -> None:
    alpaca = source(server, "1Min")
    got = alpaca.history("MSFT", 1000, FRIDAY_EVENING)
    expected = SimulatedMarket(seed=server.config.seed, timeframe="1Min").history(
        "MSFT", 1000, FRIDAY_EVENING
    )
    assert len(got) == 1000  # across three sessions
    assert np.array_equal(got.timestamps, expected.timestamps)
    assert np.allclose(got.close, expected.close, atol=1e-4)


def test_unknown_symbols_and_bad_arguments(server, keys) -> None:
    alpaca = source(server)
    with pytest.raises(UnknownSymbolError):
        alpaca.history("NOSUCH", 5, FRIDAY_EVENING)
    with pytest.raises(ValueError):
        alpaca.history("AAPL", 0)
    with pytest.raises(ValueError):
        AlpacaMarketData(timeframe="5Min", url_override=server.data_url)


def test_keys_come_from_the_environment_and_never_show(server, monkeypatch) -> None:
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.delenv("ALPACA_SECRET_KEY", raising=False)
    with pytest.raises(MarketDataError, match="ALPACA_API_KEY"):
        source(server)

    monkeypatch.setenv("ALPACA_API_KEY", server.key)
    monkeypatch.setenv("ALPACA_SECRET_KEY", "not-" + server.secret)
    refused = source(server)
    with pytest.raises(MarketDataError) as error:
        refused.history("AAPL", 5, FRIDAY_EVENING)
    assert "credentials" in str(error.value)
    for shown in (repr(refused), str(refused), str(error.value), repr(vars(refused))):
        assert server.secret not in shown and server.key not in shown


def test_a_hung_server_costs_one_timeout_not_forever(server, keys) -> None:
    alpaca = source(server, timeout=TIMEOUT)
    server.fake.inject_fault("data", "hang")
    started = time.monotonic()
    with pytest.raises(MarketDataError, match="did not answer"):
        alpaca.history("AAPL", 5, FRIDAY_EVENING)
    assert time.monotonic() - started < GIVES_UP_WITHIN

    server.fake.inject_fault("data", "latency", seconds=TIMEOUT * 10)  # answers, but too late
    started = time.monotonic()
    with pytest.raises(MarketDataError):
        alpaca.history("AAPL", 5, FRIDAY_EVENING)
    assert time.monotonic() - started < GIVES_UP_WITHIN

    server.fake.clear_faults()
    assert len(alpaca.history("AAPL", 5, FRIDAY_EVENING)) == 5  # and it recovers
    alpaca.close()
    with pytest.raises(MarketDataError, match="closed"):
        alpaca.history("AAPL", 5, FRIDAY_EVENING)


def test_errors_and_an_absent_server_become_market_data_errors(server, keys) -> None:
    alpaca = source(server)
    server.fake.inject_fault("data", "error", status=503)
    with pytest.raises(MarketDataError, match="503"):
        alpaca.history("AAPL", 5, FRIDAY_EVENING)
    server.fake.clear_faults()

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{unused.getsockname()[1]}"
    absent = AlpacaMarketData(url_override=nobody, timeout_seconds=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(MarketDataError, match="unreachable"):
        absent.history("AAPL", 5, FRIDAY_EVENING)
    assert time.monotonic() - started < GIVES_UP_WITHIN
