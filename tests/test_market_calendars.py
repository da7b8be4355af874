"""Market hours: the one rule (`is_tradable`) on both sides of every limit, and why a market is closed.

Every moment is written out in UTC, so the tests give the same answers whatever day they run on.
December is New York winter time (UTC-5): the NYSE opens at 14:30 UTC and closes at 21:00 UTC, 18:00
on an early-close day.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orch.contracts.market import MarketClosure
from orch.market import calendars
from orch.market.calendars import current_sessions, is_tradable, market_status


def at(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


# (moment, SPY trades, closure, holiday name)
EQUITY_MOMENTS = [
    # Monday 7 December 2026: a minute before the open, at the open, the last minute, at the close.
    (at(2026, 12, 7, 14, 29), False, MarketClosure.BEFORE_OPEN, None),
    (at(2026, 12, 7, 14, 29, 59), False, MarketClosure.BEFORE_OPEN, None),
    (at(2026, 12, 7, 14, 30), True, None, None),
    (at(2026, 12, 7, 20, 59), True, None, None),
    (at(2026, 12, 7, 20, 59, 59), True, None, None),
    (at(2026, 12, 7, 21, 0), False, MarketClosure.AFTER_CLOSE, None),
    # Thursday 24 December 2026, an early close at 13:00 New York: open a minute before, shut at it.
    (at(2026, 12, 24, 17, 59), True, None, None),
    (at(2026, 12, 24, 18, 0), False, MarketClosure.EARLY_CLOSE, None),
    # Christmas, a Friday: a weekday holiday, named by the library; the weekday rule alone let it pass.
    (at(2026, 12, 25, 15, 0), False, MarketClosure.HOLIDAY, "Christmas"),
    # The day after Thanksgiving closes early too; Thanksgiving itself is a holiday.
    (at(2026, 11, 26, 15, 0), False, MarketClosure.HOLIDAY, "Thanksgiving"),
    (at(2026, 11, 27, 17, 59), True, None, None),
    (at(2026, 11, 27, 18, 0), False, MarketClosure.EARLY_CLOSE, None),
    # The weekend: Saturday at midday, and Monday 00:00 UTC, which is still Sunday evening in New York.
    (at(2026, 12, 5, 15, 0), False, MarketClosure.WEEKEND, None),
    (at(2026, 12, 7, 0, 0), False, MarketClosure.WEEKEND, None),
    # A one-off closure the library does not name (President Carter's national day of mourning).
    (at(2025, 1, 9, 15, 0), False, MarketClosure.HOLIDAY, None),
    # Summer time (UTC-4): the open is 13:30 UTC.
    (at(2026, 7, 6, 13, 29), False, MarketClosure.BEFORE_OPEN, None),
    (at(2026, 7, 6, 13, 30), True, None, None),
    (at(2026, 7, 3, 15, 0), False, MarketClosure.HOLIDAY, "July 4th"),
]


@pytest.mark.parametrize(("moment", "trades", "closure", "holiday"), EQUITY_MOMENTS)
def test_equities_trade_only_in_nyse_sessions(
    moment: float, trades: bool, closure: MarketClosure | None, holiday: str | None
):
    when = datetime.fromtimestamp(moment, UTC).isoformat()
    assert is_tradable("SPY", moment) is trades, when
    status = market_status("SPY", moment)
    assert (status.open, status.closure, status.holiday) == (trades, closure, holiday), when


@pytest.mark.parametrize("moment", [moment for moment, *_ in EQUITY_MOMENTS])
def test_crypto_trades_at_any_time(moment: float):
    assert is_tradable("BTC/USD", moment) and market_status("ETH/USD", moment).open


def test_the_report_says_why_closed():
    assert str(market_status("SPY", at(2026, 12, 25, 15))) == "SPY (holiday: Christmas)"
    assert str(market_status("SPY", at(2026, 12, 5, 15))) == "SPY (weekend)"
    assert str(market_status("SPY", at(2026, 12, 7, 14, 29))) == "SPY (before the open)"
    assert str(market_status("SPY", at(2026, 12, 7, 21))) == "SPY (after the close)"
    assert str(market_status("SPY", at(2026, 12, 24, 18))) == "SPY (after an early close)"
    assert str(market_status("BTC/USD", at(2026, 12, 25, 15))) == "BTC/USD"


def test_answers_do_not_depend_on_the_order_moments_are_asked_in():
    """The last answer is remembered with its span: asking moments out of order must not reuse it."""
    expected = [is_tradable("SPY", moment) for moment, *_ in EQUITY_MOMENTS]
    for moments in (EQUITY_MOMENTS[::-1], EQUITY_MOMENTS[::2] + EQUITY_MOMENTS[1::2]):
        answers = {moment: is_tradable("SPY", moment) for moment, *_ in moments}
        assert [answers[moment] for moment, *_ in EQUITY_MOMENTS] == expected


def test_the_window_widens_so_a_long_running_process_never_runs_off_the_calendar(monkeypatch):
    """exchange-calendars' default window ends a year after today; the process-wide one moves on."""
    monkeypatch.setattr(calendars, "_current", None)
    first = current_sessions(at(2026, 12, 7, 15))
    assert first.covers(at(2027, 12, 7, 15))
    # Ten years on: Christmas Eve 2035 is a Monday session, Christmas Day a holiday.
    assert is_tradable("SPY", at(2035, 12, 24, 15)) and not is_tradable("SPY", at(2035, 12, 25, 15))
    widened = current_sessions(at(2035, 12, 24, 15))
    assert widened is not first and widened.covers(at(2036, 12, 24, 15))
    # Only ever wider: the past it knew is still there.
    assert widened.covers(at(2026, 12, 7, 15)) and is_tradable("SPY", at(2026, 12, 7, 15))
