"""Settings of the `orch hft` process, from ORCH_HFT_* environment variables.

Every interval is configurable so that tests can run the whole process in seconds. Nested risk
limits read from ORCH_HFT_RISK__<FIELD>, for example ORCH_HFT_RISK__MAX_DAILY_LOSS=5000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orch.contracts.trading import RiskLimits

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class HftSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_HFT_", env_nested_delimiter="__", extra="ignore")

    account: str = Field(default="paper-1", pattern=r"^[A-Za-z0-9_.-]{1,20}$")
    market: Literal["simulated", "alpaca"] = "simulated"
    broker: Literal["simulated", "alpaca"] = "simulated"
    data_dir: Path = Path(".orch/hft")

    # ---- Control API ----
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    # Unset: a random token is written to <data_dir>/<account>.token (mode 0600) and loopback only.
    token: SecretStr | None = None

    # ---- Market data ----
    symbols: list[str] = Field(default_factory=lambda: ["AAPL", "MSFT", "SPY", "BTC/USD", "ETH/USD"])
    tick_rate: float = Field(default=5_000.0, gt=0, le=2_000_000)  # simulated ticks per second
    seed: int = 7
    # For tests and replays: the process's clock starts here (ISO 8601 with its offset) and ticks on;
    # every time-of-day question in the process (market hours, day orders, the daily-loss day,
    # simulated ticks) reads it. Unset: the wall clock.
    clock_start: AwareDatetime | None = None
    # The simulated venue-1 price wanders this far from venue 0, so that arbitrage can appear.
    venue_dislocation_bps: float = Field(default=4.0, ge=0)

    # ---- Cadences (seconds) ----
    tier1_min_requote_seconds: float = Field(default=0.001, gt=0)
    tier2_interval_seconds: float = Field(default=0.1, gt=0)
    position_interval_seconds: float = Field(default=1.0, gt=0)
    fill_poll_seconds: float = Field(default=0.01, gt=0)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)

    # ---- Dead man's switch ----
    # Armed from the start when true; otherwise armed by the first heartbeat (a standalone run keeps trading).
    deadman_require_heartbeat: bool = False
    deadman_reducing_after_seconds: float = Field(default=30.0, gt=0)
    deadman_halt_after_seconds: float = Field(default=60.0, gt=0)

    # ---- Risk ----
    risk: RiskLimits = Field(default_factory=RiskLimits)

    # ---- Tier 1: market making and arbitrage ----
    market_making: bool = True
    mm_symbols: list[str] = Field(default_factory=lambda: ["SPY", "BTC/USD"])
    mm_quote_quantity: float = Field(default=1.0, gt=0)
    mm_half_spread_bps: float = Field(default=5.0, gt=0)
    mm_skew_bps_per_unit: float = Field(default=1.0, ge=0)  # quotes move against inventory
    mm_inventory_limit: float = Field(default=10.0, gt=0)
    mm_requote_bps: float = Field(default=2.0, ge=0)  # requote only when mid moved this far
    arbitrage: bool = True
    arb_min_edge_bps: float = Field(default=3.0, ge=0)
    arb_quantity: float = Field(default=1.0, gt=0)
    arb_trade: bool = True

    # ---- Tier 2 ----
    tier2_fast_window: int = Field(default=5, ge=2)
    tier2_slow_window: int = Field(default=20, ge=3)
    tier2_zscore_entry: float = Field(default=1.5, gt=0)

    # ---- Simulated venue ----
    sim_latency_seconds: float = Field(default=0.001, ge=0)
    sim_max_fill_fraction: float = Field(default=1.0, gt=0, le=1.0)
    sim_slippage_bps: float = Field(default=1.0, ge=0)
    sim_fee_bps: float = Field(default=0.5, ge=0)
    sim_starting_cash: float = Field(default=1_000_000.0, gt=0)

    # ---- Alpaca ----
    alpaca_paper: bool = True
    alpaca_trading_url: str | None = None  # url_override for the fake server or a proxy
    alpaca_stream_url: str | None = None  # the stock stream
    alpaca_crypto_stream_url: str | None = None
    broker_timeout_seconds: float = Field(default=5.0, gt=0)
    # Requests a minute to the broker, every call included (orch.brokers.budget). None: the broker's
    # own default (Alpaca 190, under its 200; the in-process simulated broker is not limited).
    broker_requests_per_minute: float | None = Field(default=None, ge=1)
    # Fill sync against Alpaca is one REST call; its rate limit (200/min) sets the pace, not latency.
    alpaca_poll_seconds: float = Field(default=1.0, gt=0)

    # ---- Journal ----
    # NORMAL survives any process crash; FULL also survives power loss at some cost per write.
    journal_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / f"{self.account}-journal.sqlite"

    @property
    def venue_path(self) -> Path:
        return self.data_dir / f"{self.account}-venue.sqlite"

    @property
    def token_path(self) -> Path:
        return self.data_dir / f"{self.account}.token"

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "localhost") else self.host
        return f"http://{host}:{self.port}"
