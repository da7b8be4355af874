"""The `orch hft` process: wires market data, the engine, the loops and the control API on one loop.

Start-up order matters: the journal and the broker open, the engine restores its view and any kill
still in force, the control API starts (so a kill works even while the broker is unreachable), then
reconciliation runs until a pass is clean (REDUCING until then), and only then do ticks flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from orch.brokers.base import Broker, BrokerError, CredentialsRefused
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import TradingState
from orch.hft.api import create_app
from orch.hft.clock import ProcessClock
from orch.hft.config import LOOPBACK_HOSTS, HftSettings
from orch.hft.engine import Engine
from orch.hft.journal import Journal
from orch.hft.reconcile import reconcile
from orch.hft.ticks import AlpacaTickSource, SimulatedTickSource

log = logging.getLogger(__name__)

ALPACA_KEY_ENV = "ALPACA_API_KEY"
ALPACA_SECRET_ENV = "ALPACA_SECRET_KEY"


class ConfigurationError(RuntimeError):
    pass


def resolve_token(settings: HftSettings) -> str:
    """The control API's token: ORCH_HFT_TOKEN, or one generated into a 0600 file beside the journal."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    if settings.host not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"refusing to listen on {settings.host} without ORCH_HFT_TOKEN: set a token or bind to loopback"
        )
    path = settings.token_path
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def alpaca_keys() -> tuple[str, str]:
    key, secret = os.environ.get(ALPACA_KEY_ENV), os.environ.get(ALPACA_SECRET_ENV)
    if not key or not secret:
        raise ConfigurationError(f"--broker/--market alpaca needs {ALPACA_KEY_ENV} and {ALPACA_SECRET_ENV}")
    return key, secret


def build_broker(settings: HftSettings, clock: ProcessClock) -> Broker:
    if settings.broker == "alpaca":
        from orch.brokers.alpaca import AlpacaBroker
        from orch.brokers.budget import ALPACA_DEFAULT_REQUESTS_PER_MINUTE, RequestBudget

        key, secret = alpaca_keys()
        return AlpacaBroker(
            key,
            secret,
            paper=settings.alpaca_paper,
            url_override=settings.alpaca_trading_url,
            timeout_seconds=settings.broker_timeout_seconds,
            budget=RequestBudget(settings.broker_requests_per_minute or ALPACA_DEFAULT_REQUESTS_PER_MINUTE),
        )
    from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
    from orch.market.calendars import day_order_expiry

    settings.venue_path.parent.mkdir(parents=True, exist_ok=True)
    return SimulatedBroker(
        str(settings.venue_path),
        SimulatedVenueConfig(
            latency_seconds=settings.sim_latency_seconds,
            max_fill_fraction=settings.sim_max_fill_fraction,
            slippage_bps=settings.sim_slippage_bps,
            fee_bps=settings.sim_fee_bps,
            starting_cash=settings.sim_starting_cash,
        ),
        clock=clock.now,
        day_order_expiry=day_order_expiry,  # equity orders are day orders, as at Alpaca
    )


def build_tick_source(settings: HftSettings, clock: ProcessClock) -> SimulatedTickSource | AlpacaTickSource:
    if settings.market == "alpaca":
        key, secret = alpaca_keys()
        return AlpacaTickSource(
            settings.symbols,
            key,
            secret,
            stream_url=settings.alpaca_stream_url,
            crypto_stream_url=settings.alpaca_crypto_stream_url,
        )
    return SimulatedTickSource(
        settings.symbols,
        seed=settings.seed,
        rate=settings.tick_rate,
        dislocation_bps=settings.venue_dislocation_bps,
        clock=clock.now,
    )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process decides what SIGTERM and SIGINT mean."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class HftProcess:
    def __init__(self, settings: HftSettings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.token = resolve_token(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(settings.journal_path, settings.journal_synchronous, autocheckpoint=False)
        # The one clock every time-of-day question in the process reads (ORCH_HFT_CLOCK_START).
        self.clock = ProcessClock(settings.clock_start)
        self.broker = broker or build_broker(settings, self.clock)
        self.tick_source = build_tick_source(settings, self.clock)
        self.engine = Engine(
            settings, self.broker, self.journal, wall_clock=self.clock.now, market_name=settings.market
        )
        # Wrong keys stay wrong: halt at once (reason recorded, kept across restarts), never retry.
        self.broker.on_credentials_refused(
            lambda reason: self.engine.kill(EmergencyLevel.HALT, reason, "broker")
        )
        self.stop = asyncio.Event()
        self.server: uvicorn.Server | None = None
        self._differences_last_time = False

    # ---- Loops -----------------------------------------------------------------------------------

    async def _every(self, seconds: float, action: Callable[[], Any], name: str) -> None:
        while not self.stop.is_set():
            try:
                result = action()
                if isinstance(result, Awaitable):
                    await result
            except CredentialsRefused:
                pass  # halted already, and said why once
            except (BrokerError, TimeoutError) as error:
                log.warning("%s: broker trouble: %s", name, error)
            except Exception:
                log.exception("%s failed", name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)

    async def _reconcile_periodically(self) -> None:
        """A difference seen twice in a row (not a fill in flight) is adopted and trading reduces."""
        engine = self.engine
        differences = await reconcile(engine, adopt_positions=self._differences_last_time, on_start=False)
        engine.gate.check_daily_loss()  # unrealized losses grow without any order or fill
        self._differences_last_time = bool(differences)
        gate = engine.gate
        if differences and gate.state is TradingState.ACTIVE:
            engine.reconcile_reducing = True
            gate.set_state(TradingState.REDUCING, f"reconciliation found {len(differences)} difference(s)")
        elif not differences and engine.reconcile_reducing and gate.state is TradingState.REDUCING:
            engine.reconcile_reducing = False
            if gate.emergency_level is EmergencyLevel.NONE and not engine.deadman_reducing:
                gate.set_state(TradingState.ACTIVE, "reconciliation clean again")

    async def load_instrument_rules(self) -> None:
        """The broker's published rules before any order; a broker that cannot answer leaves the
        built-in table in force, with a warning (the venue then refuses what the table lets by)."""
        try:
            loaded = await self.engine.load_instrument_rules()
        except CredentialsRefused:
            return  # halted already, and said why once
        except (BrokerError, TimeoutError) as error:
            log.warning("instrument rules: the broker did not answer (%s): the built-in table stays", error)
            return
        if loaded:
            log.info("instrument rules from %s for %s", self.broker.name, ", ".join(loaded))

    async def reconcile_on_start(self) -> None:
        engine, gate = self.engine, self.engine.gate
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            try:
                differences = await reconcile(engine)
            except CredentialsRefused:
                return  # halted: never reconciled, so a resume is refused until the keys are right
            except (BrokerError, TimeoutError) as error:
                log.warning("reconciliation attempt %d: broker unreachable: %s", attempt, error)
                await asyncio.sleep(min(0.5 * attempt, 5.0))
                continue
            if not differences:
                break
            gate.set_state(TradingState.REDUCING, f"reconciliation adopted {len(differences)} difference(s)")
        gate.reconciled = True
        self.journal.record_event("reconciled", attempts=attempt)
        gate.check_daily_loss()  # the day's losses before a restart still count
        if gate.emergency_level is EmergencyLevel.NONE:
            gate.set_state(TradingState.ACTIVE, "reconciliation clean")

    @property
    def fill_poll_seconds(self) -> float:
        if self.settings.broker == "alpaca":
            return self.settings.alpaca_poll_seconds
        return self.settings.fill_poll_seconds

    # ---- Run -------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop.set()

    def halt_now(self, reason: str) -> None:
        self.engine.kill(EmergencyLevel.HALT, reason, "signal")

    async def run(self) -> None:
        settings, engine = self.settings, self.engine
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.halt_now, "SIGUSR1")
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        engine.restore()
        engine.restore_kill()
        # Everything built so far lives as long as the process: keep the collector off it, and
        # collect young objects less often, so collections do not land in the middle of a tick.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        app = create_app(engine, self.token)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = _QuietServer(config)
        server_task = asyncio.create_task(self.server.serve())
        while not self.server.started and not server_task.done():
            await asyncio.sleep(0.01)
        if server_task.done():
            server_task.result()  # the port was taken, or similar: fail loudly
        self._write_pid()
        log.warning(
            "orch hft %s listening on %s (pid %d, broker %s, market %s)",
            settings.account,
            settings.base_url,
            os.getpid(),
            settings.broker,
            settings.market,
        )
        if self.clock.start is not None:
            log.warning(
                "orch hft %s runs on a set clock: it started at %s (ORCH_HFT_CLOCK_START), not the wall "
                "clock; market hours, day orders and the daily-loss day follow it",
                settings.account,
                self.clock.start.isoformat(),
            )
        await self.load_instrument_rules()
        await self.reconcile_on_start()
        tasks = [
            asyncio.create_task(
                self.tick_source.run(engine.on_tick, self.stop, on_batch=engine.end_of_batch)
            ),
            asyncio.create_task(self._every(self.fill_poll_seconds, engine.sync_fills, "fill sync")),
            asyncio.create_task(
                self._every(
                    settings.tier2_interval_seconds,
                    lambda: engine.tier2.evaluate(engine.wall_clock()),
                    "tier 2",
                )
            ),
            asyncio.create_task(
                self._every(
                    settings.position_interval_seconds,
                    lambda: engine.position_manager.evaluate(engine.wall_clock()),
                    "position manager",
                )
            ),
            asyncio.create_task(
                self._every(
                    settings.reconcile_interval_seconds, self._reconcile_periodically, "reconciliation"
                )
            ),
            asyncio.create_task(
                self._every(
                    min(settings.deadman_reducing_after_seconds / 4, 0.25), engine.check_deadman, "deadman"
                )
            ),
            asyncio.create_task(
                self._every(settings.position_interval_seconds, engine.enforce_level, "emergency level")
            ),
            asyncio.create_task(self._every(1.0, engine.update_tick_rate, "tick rate")),
            asyncio.create_task(self._every(1.0, self.journal.checkpoint, "journal checkpoint")),
        ]
        await self.stop.wait()
        log.warning("orch hft %s stopping", settings.account)
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.drain()
        engine.router.flush()
        self.server.should_exit = True
        await asyncio.gather(server_task, return_exceptions=True)
        await self.broker.close()
        self.journal.close()
        self._remove_pid()

    def _write_pid(self) -> None:
        (self.settings.data_dir / f"{self.settings.account}.pid").write_text(str(os.getpid()))

    def _remove_pid(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.settings.data_dir / f"{self.settings.account}.pid").unlink()
