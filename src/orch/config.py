"""Settings from `ORCH_*` environment variables and an optional `orch.toml`.

Precedence, highest first: constructor arguments, environment, `orch.toml` (in the current
directory, or the file named by `ORCH_CONFIG`), defaults. Workflows never read this: they are
deterministic, so whatever they need travels in their inputs or in `SystemState`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class TelemetryExporter(StrEnum):
    NONE = "none"
    CONSOLE = "console"
    OTLP = "otlp"


def _config_file() -> Path:
    return Path(os.environ.get("ORCH_CONFIG", "orch.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    # ---- Temporal --------------------------------------------------------------------------------
    temporal_address: str = "localhost:7233"
    namespace: str = "default"
    # Where the embedded stack keeps its SQLite history, logs and journals.
    home: Path = Path(".orch")
    ui_port: int = 8233

    # ---- Commands --------------------------------------------------------------------------------
    max_concurrent_workflows: int = Field(default=5, ge=1)
    max_retries: int = Field(default=3, ge=0)
    workflow_timeout_seconds: float = Field(default=900.0, gt=0)
    # How often SystemState frees slots of commands that ended without releasing them.
    command_reap_interval_seconds: float = Field(default=30.0, gt=0)

    # ---- Discovery -------------------------------------------------------------------------------
    discovery_strategy: str = "hybrid_v1"  # the strategy a brand-new system starts with
    discovery_interval_seconds: float = Field(default=300.0, gt=0)
    discovery_top_n: int = Field(default=10, ge=1)
    discovery_history_bars: int = Field(default=120, ge=20)
    market_seed: int = 7
    # Emulates a rate-limited data source: seconds spent per symbol while scanning (0 = as fast as possible).
    discovery_scan_pacing_seconds: float = Field(default=0.0, ge=0)

    # ---- Validation and backtests ----
    # The csv source: a folder of <SYMBOL>.csv / <SYMBOL>.parquet OHLCV files, as the workers see it.
    csv_folder: Path | None = None
    # Where `orch validate-algorithms` writes its report folders (None: <home>/reports).
    report_dir: Path | None = None
    # Backtests one worker runs at once on `orch-backtest`, each in its own process (None: one per core).
    backtest_concurrency: int | None = Field(default=None, ge=1)
    # How long a cancelled backtest process may take to stop before it is terminated.
    backtest_cancel_grace_seconds: float = Field(default=5.0, gt=0)
    # How often a running backtest's bar count is read and heartbeated.
    backtest_progress_seconds: float = Field(default=0.5, gt=0)
    # Seconds spent per bar (0 = as fast as possible): lets a test watch and cancel a backtest mid-way.
    backtest_bar_delay_seconds: float = Field(default=0.0, ge=0)

    # ---- Data sources and the resource pool ----
    # The csv source reads `csv_folder` (above); Alpaca's keys come from ALPACA_API_KEY/ALPACA_SECRET_KEY,
    # never from settings or workflow inputs.
    # Bars the workers' sources serve: "1D" (daily) or "1Min".
    data_timeframe: str = Field(default="1D", pattern="^(1D|1Min)$")
    # A source whose newest bar is older than this is stale and the next fallback answers instead
    # (None: three bars, plus a weekend for equities, as the market-conditions agent judges).
    data_staleness_seconds: float | None = Field(default=None, gt=0)
    # After the primary fails, requests go straight to the fallbacks for this long, then try it again.
    data_source_retry_seconds: float = Field(default=30.0, ge=0)
    # How long a worker keeps SystemState's data sources before looking them up again.
    data_sources_refresh_seconds: float = Field(default=5.0, ge=0)
    # Alpaca market data: url override (a proxy, or the fake server in tests) and each call's timeout.
    alpaca_data_url: str | None = None
    alpaca_timeout_seconds: float = Field(default=10.0, gt=0)
    # The symbols the alpaca source serves (None: the simulated market's universe, real tickers).
    alpaca_symbols: list[str] | None = None
    # The shared resource pool of each worker process.
    http_pool_size: int = Field(default=20, ge=1)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    # Requests per window per API ("alpaca-data", "alpaca-trading", ...); an API not listed is not limited.
    rate_limits: dict[str, float] = Field(
        default_factory=lambda: {"alpaca-data": 200.0, "alpaca-trading": 200.0}
    )
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    # A request that finds no capacity within this long fails (retryably) instead of queueing forever.
    rate_limit_max_wait_seconds: float = Field(default=120.0, gt=0)
    cache_ttl_seconds: float = Field(default=30.0, gt=0)
    cache_max_entries: int = Field(default=1024, ge=1)

    # ---- Worker tuning ---------------------------------------------------------------------------
    max_concurrent_activities: int = Field(default=100, ge=1)
    critical_max_concurrent_activities: int = Field(default=20, ge=1)

    # ---- Emergency, health and reviews ----------------------------------------------------------
    # How workers and `orch` reach `orch hft`: ORCH_HFT_URL (default from ORCH_HFT_HOST/PORT) and
    # ORCH_HFT_TOKEN, the same variable the process reads (default: its token file under ORCH_HFT_DATA_DIR,
    # else <home>/hft as `orch up` arranges).
    hft_url: str | None = None
    hft_token: SecretStr | None = None
    hft_timeout_seconds: float = Field(default=5.0, gt=0)
    # How long the emergency stop waits for orch hft to confirm open orders cancelled (and, at flatten,
    # positions closed) before it reports what is left.
    emergency_confirm_seconds: float = Field(default=15.0, gt=0)
    tactical_review_interval_seconds: float = Field(default=30.0, gt=0)
    strategic_review_interval_seconds: float = Field(default=300.0, gt=0)
    review_symbols: int = Field(default=5, ge=1)
    # Consecutive errors after which an agent is disabled (AgentErrorTracker) and reported.
    agent_error_threshold: int = Field(default=5, ge=1)
    # Bars older than this make a non-simulated data source stale in the health check.
    health_max_data_age_seconds: float = Field(default=900.0, gt=0)
    # orch-backtest runs only where backtests are wanted: its missing pollers are a warning unless required.
    health_require_backtest_worker: bool = False
    # The health check's own deadline in `orch health-check` (a check that cannot run is unhealthy).
    health_check_timeout_seconds: float = Field(default=30.0, gt=0)

    # ---- Trading cycle ----------------------------------------------------------------------------
    # Every worker's bootstrap starts the account's TradingEngine (one per account, fixed id) unless
    # it runs already or was stopped on purpose (`orch cycle stop`); tests turn this off.
    trading_autostart: bool = True
    # The engine's base interval when the bootstrap or `orch cycle start` starts it (it adapts from there).
    cycle_interval_seconds: float = Field(default=60.0, gt=0)

    # ---- Telemetry -------------------------------------------------------------------------------
    otel_exporter: TelemetryExporter = TelemetryExporter.NONE
    otel_endpoint: str = "http://localhost:4317"
    service_name: str = "orch"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_config_file()),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
