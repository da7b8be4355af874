"""The simulated market: deterministic, seeded daily or minute bars for stocks and crypto pairs.

Every symbol follows one underlying daily path from `EPOCH` on. The path is generated lazily in
blocks whose randomness depends only on (seed, symbol, block number) and on the state the block
before hands over, so a bar never depends on the window asked for, on the order of requests or on
the other symbols. Minute bars of a day are a random bridge from that day's daily open to its daily
close, so both timeframes agree on each day's open, close and volume (intraday highs and lows are
not forced inside the daily range).

A Markov chain moves each symbol through regimes (`Regime`):

- trending: a steady drift, up or down, of a fifth to nearly half the daily volatility;
- ranging: a mean-reverting wander around a level at low volatility, so Bollinger bands squeeze;
- volatile: more than twice the volatility and no drift.

Volume grows with the size of a move and with the regime, surges now and then at random and on
the first days of a trending or volatile run (a breakout), so volume-surge, momentum and squeeze
signals have something real to find. `regime_at` gives the ground truth.

Calendar: equities trade in the NYSE's regular sessions (`orch.market.calendars`: 09:30-16:00 New
York, holidays skipped, early closes at 13:00 with their shorter minute bars); crypto trades every
day around the clock. An equity's trading day index counts sessions from the epoch. Timestamps are
bar open times in UTC; a daily bar is stamped 00:00 UTC of its date. A bar is served once it has
ended: a daily equity bar at the session close, a daily crypto bar at midnight UTC, a minute bar a
minute after it opens.
Any `end` after `EPOCH`, past or future, is served; nothing exists before `EPOCH`, so a window
reaching back past it comes back shorter than asked.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import numpy as np

from orch.contracts.market import Regime
from orch.market.base import MarketDataSource, PriceHistory, UnknownSymbolError, is_crypto
from orch.market.calendars import EquitySessions, current_sessions

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_UNIVERSE_SIZE",
    "EPOCH",
    "TIMEFRAMES",
    "SimulatedMarket",
    "clear_cache",
    "is_crypto",
]

DEFAULT_SEED = 7
DEFAULT_UNIVERSE_SIZE = 60
TIMEFRAMES = ("1D", "1Min")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # a Wednesday, so equities and crypto start on the same day

# Liquid US names in a fixed order: the universe of size n is the first n - len(CRYPTO_PAIRS) of
# these plus the crypto pairs. Real tickers, so configurations carry over to real data sources;
# the simulated prices have nothing to do with the real ones.
EQUITY_TICKERS = (
    "SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO",
    "JPM", "V", "UNH", "XOM", "MA", "JNJ", "PG", "HD", "COST", "ABBV",
    "MRK", "LLY", "CVX", "PEP", "KO", "WMT", "BAC", "ADBE", "CRM", "NFLX",
    "AMD", "ORCL", "CSCO", "TMO", "ACN", "MCD", "ABT", "DHR", "LIN", "WFC",
    "DIS", "INTC", "TXN", "VZ", "CMCSA", "PFE", "NKE", "PM", "QCOM", "UPS",
    "RTX", "HON", "IBM", "AMGN", "SBUX", "CAT", "GS", "BA", "MS", "BLK",
    "GE", "INTU", "AMAT", "ISRG", "DE", "BKNG", "MDT", "PLD", "ADP", "GILD",
    "T", "LMT", "SYK", "CVS", "C", "SCHW", "MU", "NOW", "MMC", "ADI",
    "TJX", "ZTS", "CB", "MO", "PYPL", "SO", "DUK", "UBER", "SHOP", "PANW",
)  # fmt: skip
# Rough price levels at the epoch, so the pairs look like themselves.
CRYPTO_PAIRS = {"BTC/USD": 14_000.0, "ETH/USD": 800.0, "SOL/USD": 20.0, "LTC/USD": 230.0}

# ---- Path dynamics -------------------------------------------------------------------------------

_TRENDING, _RANGING, _VOLATILE = range(3)
_REGIMES = (Regime.TRENDING, Regime.RANGING, Regime.VOLATILE)  # indexed by the codes above
_MEAN_RUN_DAYS = np.array([30.0, 40.0, 12.0])
# Where a run goes when it ends (rows: from; columns: to). Ranging often ends in a trend: the
# squeeze-then-breakout that discovery looks for.
_SWITCH = np.array([[0.0, 0.7, 0.3], [0.65, 0.0, 0.35], [0.4, 0.6, 0.0]])
_FIRST_REGIME = np.array([0.35, 0.5, 0.15])
_VOLATILITY_MULTIPLIER = np.array([0.9, 0.6, 2.3])
_VOLUME_MULTIPLIER = np.array([1.2, 0.8, 1.8])
_TREND_DRIFT_RANGE = (0.2, 0.45)  # in daily volatilities
# Every run drifts a little back towards the start price (this much per day, in daily
# volatilities per unit of log deviation), and trends lean the same way, so years of random runs
# do not carry a stock to fractions of a cent or to millions.
_REVERSION_PER_DAY = 0.1
_DIRECTION_PULL = 2.0
_DIRECTION_LEAN_UP = 0.2  # and a slight upward bias, as stocks have

# Ranging: log price = level + an AR(1)-like filter of the innovations (truncated so it is a plain
# convolution), scaled so that its daily steps have unit variance. It wanders but comes back.
_RANGE_PERSISTENCE = 0.85
_RANGE_KERNEL_DAYS = 24
_RANGE_KERNEL = _RANGE_PERSISTENCE ** np.arange(_RANGE_KERNEL_DAYS)
_RANGE_KERNEL /= math.sqrt(float(np.sum(np.diff(_RANGE_KERNEL, prepend=0.0, append=0.0) ** 2)))

_GAP_SHARE = 0.3  # an equity's overnight gap, in daily volatilities
_WICK_SHARE = 0.8  # how far highs and lows reach beyond open and close, at most, in bar volatilities
_VOLUME_NOISE = 0.8  # log volume varies uniformly this wide
_VOLUME_PER_MOVE = 0.6  # extra volume per unit of |innovation|
_SURGE_PROBABILITY = 0.02
_SURGE_RANGE = (2.5, 6.0)
_ONSET_DAYS = 2  # days of surging volume that open a trending or volatile run
_MINUTE_SURGE_PROBABILITY = 0.01

# The first block reaches from EPOCH to about now; later ones are smaller, so the present moving
# on costs little. (Blocks are a fixed grid: where they start never depends on what was asked.)
_FIRST_BLOCK_DAYS = 2048
_BLOCK_DAYS = 512
_MAX_DAYS = 100 * 366  # far enough for anyone; a mistyped year 9999 would take minutes to generate
_MINUTE_DAYS_CACHED = 512
_PATHS_CACHED = 512  # about 64 MB; a universe of 60 symbols is 60 paths

# Every instance shares the daily paths (keyed by seed and symbol) and this lock.
_LOCK = threading.RLock()
_PATHS: OrderedDict[tuple[int, str], _DailyPath] = OrderedDict()

_PROFILE_STREAM, _PATH_STREAM, _MINUTE_STREAM = range(3)


def _cumulative(probabilities: np.ndarray) -> list[float]:
    """Cumulative edges ending at exactly 1.0, so a uniform draw always lands on a choice."""
    edges = np.cumsum(probabilities) / probabilities.sum()
    edges[edges > 1.0 - 1e-12] = 1.0
    return edges.tolist()


_FIRST_REGIME_CDF = _cumulative(_FIRST_REGIME)
_LOG_CONTINUE_PROBABILITY = np.log1p(-1.0 / _MEAN_RUN_DAYS).tolist()
_SWITCH_CDF = [_cumulative(row) for row in _SWITCH]

_CRYPTO_SESSION_MINUTES = 24 * 60
_EPOCH_DAY = np.datetime64(EPOCH.date(), "D")
_ONE_DAY = np.timedelta64(1, "D")
_ONE_MINUTE = np.timedelta64(1, "m")


class SimulatedMarket(MarketDataSource):
    """Seeded bars for `universe_size` symbols (equities plus a few crypto pairs) at one timeframe.

    Daily paths are cached per process and shared by every instance with the same seed (they are
    the same paths), so a second instance, or the minute timeframe, does not generate them again.
    Thread-safe: generation happens under a lock, and `history` returns copies.
    """

    name = "simulated"

    def __init__(
        self, seed: int = DEFAULT_SEED, universe_size: int = DEFAULT_UNIVERSE_SIZE, timeframe: str = "1D"
    ) -> None:
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAMES)}, not {timeframe!r}")
        smallest, largest = len(CRYPTO_PAIRS) + 1, len(EQUITY_TICKERS) + len(CRYPTO_PAIRS)
        if not smallest <= universe_size <= largest:
            raise ValueError(f"universe_size must be between {smallest} and {largest}, not {universe_size}")
        self.seed = seed
        self.timeframe = timeframe
        self._symbols = [*EQUITY_TICKERS[: universe_size - len(CRYPTO_PAIRS)], *CRYPTO_PAIRS]
        self._known = frozenset(self._symbols)
        self._minute_days: OrderedDict[tuple[str, int], PriceHistory] = OrderedDict()

    def universe(self) -> list[str]:
        return list(self._symbols)

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        """The last `bars` bars that ended at or before `end` (default now); fewer near `EPOCH`."""
        if bars < 1:
            raise ValueError(f"bars must be at least 1, not {bars}")
        moment = _as_utc_datetime64(end or datetime.now(UTC))
        with _LOCK:
            path = self._path(symbol)
            if self.timeframe == "1Min":
                return self._minute_history(path, bars, moment)
            last = _last_finished_day(path.crypto, moment)
            if last < 0:
                return _empty_history(symbol)
            path.extend_to(last)
            return path.window(max(0, last - bars + 1), last + 1)

    def regime_at(self, symbol: str, timestamp: datetime) -> Regime:
        """The regime `symbol` is in at `timestamp`. Regimes change between days, so this is the
        regime of the trading day of `timestamp`'s UTC date, or of the last one before it."""
        day = _as_utc_datetime64(timestamp).astype("datetime64[D]")
        with _LOCK:
            path = self._path(symbol)
            day = _trading_day_on_or_before(day, path.crypto)
            if day < _EPOCH_DAY:
                raise ValueError(f"{timestamp.isoformat()} is before the simulation starts ({EPOCH.date()})")
            index = _trading_day_index(day, path.crypto)
            path.extend_to(index)
            return _REGIMES[path.regime[index]]

    # ---- Internals -------------------------------------------------------------------------------

    def _path(self, symbol: str) -> _DailyPath:
        if symbol not in self._known:
            raise UnknownSymbolError(
                f"{symbol!r} is not in the simulated universe of {len(self._symbols)} symbols"
            )
        key = (self.seed, symbol)
        path = _PATHS.get(key)
        if path is None:
            path = _PATHS[key] = _DailyPath(_profile(self.seed, symbol), self.seed)
            if len(_PATHS) > _PATHS_CACHED:
                _PATHS.popitem(last=False)
        else:
            _PATHS.move_to_end(key)
        return path

    def _minute_history(self, path: _DailyPath, bars: int, moment: np.datetime64) -> PriceHistory:
        last = _last_finished_minute(path.crypto, moment)
        if last is None:
            return _empty_history(path.symbol)
        last_day, last_minute = last
        # Days back from the last until enough minutes: sessions differ in length (early closes).
        days = [self._minute_day(path, last_day)]
        held = last_minute + 1
        while held < bars and last_day - len(days) >= 0:
            days.insert(0, self._minute_day(path, last_day - len(days)))
            held += len(days[0])
        stop = sum(map(len, days)) - len(days[-1]) + last_minute + 1
        start = max(0, stop - bars)
        columns = ("timestamps", "open", "high", "low", "close", "volume")
        joined = {name: np.concatenate([getattr(d, name) for d in days])[start:stop] for name in columns}
        return PriceHistory(symbol=path.symbol, **joined)

    def _minute_day(self, path: _DailyPath, day_index: int) -> PriceHistory:
        key = (path.symbol, day_index)
        cached = self._minute_days.get(key)
        if cached is not None:
            self._minute_days.move_to_end(key)
            return cached
        path.extend_to(day_index)
        generated = _generate_minute_day(path, day_index, self.seed)
        self._minute_days[key] = generated
        if len(self._minute_days) > _MINUTE_DAYS_CACHED:
            self._minute_days.popitem(last=False)
        return generated


def clear_cache() -> None:
    """Forget every generated daily path, to free memory; they come back identical when asked for."""
    with _LOCK:
        _PATHS.clear()


# ---- Symbols -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    """What makes one symbol itself: its price level, volatility and typical volume."""

    symbol: str
    key: int  # stable across processes, unlike hash()
    crypto: bool
    start_price: float
    daily_volatility: float
    base_volume: float


def _profile(seed: int, symbol: str) -> _Profile:
    key = zlib.crc32(symbol.encode())
    rng = np.random.default_rng([seed, key, _PROFILE_STREAM])
    crypto = is_crypto(symbol)
    if crypto:
        start_price = CRYPTO_PAIRS[symbol] * math.exp(0.1 * rng.standard_normal())
        daily_volatility = rng.uniform(0.55, 0.9) / math.sqrt(365)
        dollar_volume = math.exp(rng.normal(math.log(2e8), 0.5))
    else:
        start_price = math.exp(rng.uniform(math.log(15.0), math.log(450.0)))
        daily_volatility = rng.uniform(0.18, 0.5) / math.sqrt(252)
        dollar_volume = math.exp(rng.normal(math.log(3e8), 0.8))
    return _Profile(symbol, key, crypto, start_price, daily_volatility, dollar_volume / start_price)


# ---- The daily path ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Carry:
    """What one block hands the next, so the path continues as if it had never stopped."""

    log_close: float
    regime: int  # -1 before the first block: the first run draws its regime from _FIRST_REGIME
    days_left_in_run: int
    run_drift: float
    noise_tail: np.ndarray  # the last _RANGE_KERNEL_DAYS innovations, for the ranging filter


class _DailyPath:
    """One symbol's daily bars from EPOCH on (index = trading day), grown a block at a time as later
    days are asked for."""

    def __init__(self, profile: _Profile, seed: int) -> None:
        self.profile = profile
        self.symbol = profile.symbol
        self.crypto = profile.crypto
        self._seed = seed
        self._blocks_generated = 0
        self._carry = _Carry(math.log(profile.start_price), -1, 0, 0.0, np.zeros(_RANGE_KERNEL_DAYS))
        empty = np.empty(0)
        self.open, self.high, self.low, self.close, self.volume, self.volatility = (empty,) * 6
        self.regime = np.empty(0, dtype=np.int8)

    def extend_to(self, day_index: int) -> None:
        if day_index < len(self.close):
            return
        if day_index >= _MAX_DAYS:
            raise ValueError(f"the simulation covers {_MAX_DAYS} days from {EPOCH.date()}")
        while len(self.close) <= day_index:
            days = _FIRST_BLOCK_DAYS if self._blocks_generated == 0 else _BLOCK_DAYS
            block, self._carry = _generate_block(
                self.profile, self._seed, self._blocks_generated, days, self._carry
            )
            self._blocks_generated += 1
            for name, values in block.items():
                setattr(self, name, np.concatenate([getattr(self, name), values]))

    def window(self, start: int, stop: int) -> PriceHistory:
        timestamps = _trading_days(np.arange(start, stop), self.crypto).astype("datetime64[s]")
        columns = (self.open, self.high, self.low, self.close, self.volume)
        return PriceHistory(self.symbol, timestamps, *(column[start:stop].copy() for column in columns))


def _generate_block(
    profile: _Profile, seed: int, block_number: int, days: int, carry: _Carry
) -> tuple[dict[str, np.ndarray], _Carry]:
    rng = np.random.default_rng([seed, profile.key, _PATH_STREAM, block_number])
    innovations, gap_z = rng.standard_normal((2, days))
    # Uniforms are much cheaper than normals, and wicks and volume noise need no bell curve.
    high_u, low_u, volume_u, surge_u, surge_size_u = rng.random((5, days))
    noise = np.concatenate([carry.noise_tail, innovations])
    ranging_steps = np.diff(np.convolve(noise, _RANGE_KERNEL, mode="valid"))
    regime, drift, onset, ongoing_run = _regime_runs(rng, carry, profile, innovations, ranging_steps)

    volatility = profile.daily_volatility * _VOLATILITY_MULTIPLIER[regime]
    steps = np.where(regime == _RANGING, ranging_steps, innovations)
    log_close = carry.log_close + np.cumsum(drift + volatility * steps)
    previous_close = np.exp(np.concatenate([[carry.log_close], log_close[:-1]]))
    close = np.exp(log_close)
    # Crypto never closes, so its day opens where the last one closed.
    open_ = previous_close if profile.crypto else previous_close * np.exp(_GAP_SHARE * volatility * gap_z)
    wick = _WICK_SHARE * volatility
    high = np.maximum(open_, close) * np.exp(wick * high_u)
    low = np.minimum(open_, close) * np.exp(-wick * low_u)

    surge_size = _SURGE_RANGE[0] + (_SURGE_RANGE[1] - _SURGE_RANGE[0]) * surge_size_u
    surge = np.where(onset | (surge_u < _SURGE_PROBABILITY), surge_size, 1.0)
    volume = (
        profile.base_volume
        * _VOLUME_MULTIPLIER[regime]
        * np.exp(_VOLUME_NOISE * (volume_u - 0.5))
        * (1.0 + _VOLUME_PER_MOVE * np.abs(steps))
        * surge
    )
    next_carry = _Carry(float(log_close[-1]), *ongoing_run, noise_tail=noise[-_RANGE_KERNEL_DAYS:])
    columns = {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "volatility": volatility,
        "regime": regime,
    }
    return columns, next_carry


def _regime_runs(
    rng: np.random.Generator,
    carry: _Carry,
    profile: _Profile,
    innovations: np.ndarray,
    ranging_steps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, float]]:
    """Each day's regime and drift, which days open a run, and the run still going at the end
    (regime, days left, drift), which the next block continues.

    Run lengths are geometric, which makes this exactly a Markov chain on days, with four random
    numbers per run instead of some per day.
    """
    days = len(innovations)
    # The chain of runs. Plain Python: a few dozen runs, each depending on the one before.
    regimes, lengths, draws = [], [], []
    regime, covered = carry.regime, carry.days_left_in_run
    if covered:
        regimes.append(regime)
        lengths.append(covered)
    uniform_rows: list[list[float]] = []
    while covered < days:
        if not uniform_rows:
            uniform_rows = rng.random((64, 4)).tolist()
        row = uniform_rows.pop()
        cumulative = _FIRST_REGIME_CDF if regime < 0 else _SWITCH_CDF[regime]
        regime = 0 if row[0] < cumulative[0] else 1 if row[0] < cumulative[1] else 2
        length = max(1, math.ceil(math.log1p(-row[1]) / _LOG_CONTINUE_PROBABILITY[regime]))
        regimes.append(regime)
        lengths.append(length)
        draws.append(row)
        covered += length
    days_left_in_last_run = covered - days
    lengths[-1] -= days_left_in_last_run

    # Each run's drift pulls towards the start price from wherever the price stands when it
    # starts; prefix sums of the steps tell where that is without building the path.
    ends = np.cumsum(lengths)
    starts = ends - lengths
    is_ranging = np.array(regimes) == _RANGING
    innovation_sums = np.concatenate([[0.0], np.cumsum(innovations)])
    ranging_sums = np.concatenate([[0.0], np.cumsum(ranging_steps)])
    step_sums = np.where(
        is_ranging, ranging_sums[ends] - ranging_sums[starts], innovation_sums[ends] - innovation_sums[starts]
    )
    moves = (profile.daily_volatility * _VOLATILITY_MULTIPLIER[regimes] * step_sums).tolist()
    drifts = [carry.run_drift] * (len(regimes) - len(draws))  # the run carried in keeps its drift
    level = carry.log_close
    log_start_price = math.log(profile.start_price)
    low, high = _TREND_DRIFT_RANGE
    for run, (regime, length, move) in enumerate(zip(regimes, lengths, moves, strict=True)):
        if run >= len(drifts):
            _, _, direction_u, size_u = draws[run - len(regimes) + len(draws)]
            deviation = level - log_start_price
            drift = -_REVERSION_PER_DAY * deviation * profile.daily_volatility
            if regime == _TRENDING:
                up_probability = _logistic(_DIRECTION_LEAN_UP - _DIRECTION_PULL * deviation)
                direction = 1.0 if direction_u < up_probability else -1.0
                drift += direction * profile.daily_volatility * (low + (high - low) * size_u)
            drifts.append(drift)
        level += length * drifts[run] + move

    fresh_starts = starts[len(regimes) - len(draws) :][~is_ranging[len(regimes) - len(draws) :]]
    onset = np.zeros(days + _ONSET_DAYS, dtype=bool)
    for offset in range(_ONSET_DAYS):
        onset[fresh_starts + offset] = True
    regime_of_day = np.repeat(np.array(regimes, dtype=np.int8), lengths)
    return (
        regime_of_day,
        np.repeat(drifts, lengths),
        onset[:days],
        (regime, days_left_in_last_run, drifts[-1]),
    )


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


# ---- Minute bars ---------------------------------------------------------------------------------


def _generate_minute_day(path: _DailyPath, day_index: int, seed: int) -> PriceHistory:
    """One trading day of minute bars: a bridge from the day's open to its close, volume shared out."""
    day = _trading_days(np.array([day_index]), path.crypto)[0]
    first_minute, minutes = _session(day, path.crypto)
    rng = np.random.default_rng([seed, path.profile.key, _MINUTE_STREAM, day_index])
    step_z = rng.standard_normal(minutes)
    high_u, low_u, volume_u, surge_u = rng.random((4, minutes))

    day_open, day_close = float(path.open[day_index]), float(path.close[day_index])
    minute_volatility = float(path.volatility[day_index]) / math.sqrt(minutes)
    walk = np.cumsum(minute_volatility * step_z)
    elapsed = np.arange(1, minutes + 1) / minutes
    log_close = (
        math.log(day_open) + elapsed * (math.log(day_close) - math.log(day_open)) + walk - elapsed * walk[-1]
    )
    close = np.exp(log_close)
    close[-1] = day_close  # exactly, not to the last bit of exp(log())
    open_ = np.concatenate([[day_open], close[:-1]])
    wick = _WICK_SHARE * minute_volatility
    high = np.maximum(open_, close) * np.exp(wick * high_u)
    low = np.minimum(open_, close) * np.exp(-wick * low_u)

    # Equity volume is U-shaped through the session (busy open and close); crypto's is flat.
    position = (np.arange(minutes) + 0.5) / minutes
    shape = np.ones(minutes) if path.crypto else 1.0 + 1.5 * (2.0 * position - 1.0) ** 2
    weights = (
        shape * np.exp(_VOLUME_NOISE * volume_u) * np.where(surge_u < _MINUTE_SURGE_PROBABILITY, 4.0, 1.0)
    )
    volume = float(path.volume[day_index]) * weights / weights.sum()

    timestamps = (day.astype("datetime64[m]") + first_minute + np.arange(minutes)).astype("datetime64[s]")
    return PriceHistory(path.symbol, timestamps, open_, high, low, close, volume)


# ---- Calendar ------------------------------------------------------------------------------------


def _as_utc_datetime64(moment: datetime) -> np.datetime64:
    """Naive datetimes are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "s")


def _equity_days(through: np.datetime64 = _EPOCH_DAY) -> tuple[EquitySessions, np.ndarray]:
    """The NYSE's sessions and, as datetime64 days, those from EPOCH on, through at least `through`."""
    global _EQUITY_DAYS
    day_seconds = int((through - np.datetime64("1970-01-01", "D")) // _ONE_DAY) * 86_400
    sessions = current_sessions(float(day_seconds))
    known = _EQUITY_DAYS
    if known is None or known[0] is not sessions:
        days = np.array(sessions.between(EPOCH.date(), sessions.end), dtype="datetime64[D]")
        known = _EQUITY_DAYS = (sessions, days)
    return known


def _equity_days_through_index(index: int) -> np.ndarray:
    """The sessions from EPOCH on, at least `index` + 1 of them."""
    days = _equity_days()[1]
    while index >= len(days):  # the process-wide calendar widens by years each time it is asked past its end
        days = _equity_days(days[-1] + _ONE_DAY * 366)[1]
    return days


_EQUITY_DAYS: tuple[EquitySessions, np.ndarray] | None = None


def _trading_day_index(day: np.datetime64, crypto: bool) -> int:
    """Position of a trading day in the symbol's calendar (0 = EPOCH, or the first session after it)."""
    if crypto:
        return int((day - _EPOCH_DAY) // _ONE_DAY)
    return int(np.searchsorted(_equity_days(day)[1], day))


def _trading_days(indices: np.ndarray, crypto: bool) -> np.ndarray:
    if crypto:
        return _EPOCH_DAY + indices.astype("timedelta64[D]")
    return _equity_days_through_index(int(indices.max(initial=0)))[indices]


def _trading_day_on_or_before(day: np.datetime64, crypto: bool) -> np.datetime64:
    if crypto:
        return day
    days = _equity_days(day)[1]
    index = int(np.searchsorted(days, day, side="right")) - 1
    return days[index] if index >= 0 else _EPOCH_DAY - _ONE_DAY


def _is_trading_day(day: np.datetime64, crypto: bool) -> bool:
    return crypto or _equity_days(day)[0].is_session(day.item())


def _session(day: np.datetime64, crypto: bool) -> tuple[int, int]:
    """(first minute after 00:00 UTC, number of minutes) of the day's trading session."""
    if crypto:
        return 0, _CRYPTO_SESSION_MINUTES
    return _equity_session(day.item())


@lru_cache(maxsize=8192)
def _equity_session(day: date) -> tuple[int, int]:
    """The NYSE session on `day` in minutes after 00:00 UTC: (810 or 870, 390), or 210 minutes on an
    early close."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    opens, closes = current_sessions(midnight).open_close(day)
    return int(opens - midnight) // 60, int(closes - opens) // 60


def _split(moment: np.datetime64) -> tuple[np.datetime64, int]:
    day = moment.astype("datetime64[D]")
    return day, int((moment - day) // _ONE_MINUTE)


def _last_finished_day(crypto: bool, moment: np.datetime64) -> int:
    """Index of the last daily bar that ended at or before `moment`; -1 if none has."""
    day, minute = _split(moment)
    if not (_is_trading_day(day, crypto) and minute >= sum(_session(day, crypto))):
        day = _trading_day_on_or_before(day - _ONE_DAY, crypto)
    return _trading_day_index(day, crypto) if day >= _EPOCH_DAY else -1


def _last_finished_minute(crypto: bool, moment: np.datetime64) -> tuple[int, int] | None:
    """(day index, minute of the session) of the last minute bar that ended at or before `moment`."""
    day, minute = _split(moment)
    if _is_trading_day(day, crypto):
        first_minute, minutes = _session(day, crypto)
        finished = min(max(minute - first_minute, 0), minutes)
        if finished and day >= _EPOCH_DAY:
            return _trading_day_index(day, crypto), finished - 1
    day = _trading_day_on_or_before(day - _ONE_DAY, crypto)
    if day < _EPOCH_DAY:
        return None
    return _trading_day_index(day, crypto), _session(day, crypto)[1] - 1


def _empty_history(symbol: str) -> PriceHistory:
    prices = (np.empty(0) for _ in range(5))
    return PriceHistory(symbol, np.empty(0, dtype="datetime64[s]"), *prices)
