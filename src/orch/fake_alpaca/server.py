"""Running the fake Alpaca server: in a background thread of this process, or as its own process.

    with FakeAlpacaServer(fill_policy=FillPolicy.partial(3, 0.5)) as server:
        client = TradingClient(server.key, server.secret, paper=True, url_override=server.trading_url)
        ...
        server.fake.set_price("AAPL", 150)      # direct access to the state, for assertions

    with FakeAlpacaSubprocess() as server:     # survives while its client process is SIGKILLed
        server.admin.set_price("AAPL", 150)     # the same controls, over the admin HTTP API

Both bind 127.0.0.1 on a free port and expose the same URLs: `trading_url` and `data_url` (the same
server; pass them as alpaca-py's `url_override`), `stream_url` (the stock stream, for
`StockDataStream(url_override=...)`) and `crypto_stream_url`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from orch.fake_alpaca.app import build_app
from orch.fake_alpaca.broker import FillPolicy
from orch.fake_alpaca.core import FakeAlpaca, FakeAlpacaConfig
from orch.fake_alpaca.rules import Rule
from orch.fake_alpaca.stream import CRYPTO_STREAM_PATH, STREAM_IEX_PATH
from orch.market.base import MarketDataSource

STARTUP_TIMEOUT_SECONDS = 15.0


class _Endpoints:
    host: str
    port: int
    key: str
    secret: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def trading_url(self) -> str:
        return self.url

    @property
    def data_url(self) -> str:
        return self.url

    @property
    def stream_url(self) -> str:
        return f"ws://{self.host}:{self.port}{STREAM_IEX_PATH}"

    @property
    def crypto_stream_url(self) -> str:
        return f"ws://{self.host}:{self.port}{CRYPTO_STREAM_PATH}"

    @property
    def headers(self) -> dict[str, str]:
        return {"APCA-API-KEY-ID": self.key, "APCA-API-SECRET-KEY": self.secret}

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}(url={self.url!r})"


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one, with no window for another process to take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # stdout carries only the URL line a parent process reads
        lifespan="on",
        # A request held by an injected hang must not keep the server from stopping.
        timeout_graceful_shutdown=2,
        ws_ping_interval=None,
    )


# ---- In a thread of this process -----------------------------------------------------------------


class FakeAlpacaServer(_Endpoints):
    """The fake in a background thread. Keyword arguments are `FakeAlpacaConfig` fields.

    Tests default to no automatic price ticks (`tick_interval_seconds=None`) and to recording every
    response, so prices move only when the test says and every answer can be checked against the spec.
    """

    def __init__(
        self,
        config: FakeAlpacaConfig | None = None,
        *,
        daily_source: MarketDataSource | None = None,
        minute_source: MarketDataSource | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **config_fields: Any,
    ) -> None:
        if config is not None and config_fields:
            raise TypeError("pass either a FakeAlpacaConfig or its fields, not both")
        defaults = {"tick_interval_seconds": None, "record_responses": True}
        self.config = config or FakeAlpacaConfig(**(defaults | config_fields))
        self.fake = FakeAlpaca(self.config, daily_source, minute_source)
        self.host, self.port = host, port
        self.key, self.secret = self.config.key, self.config.secret
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(build_app(self.fake)))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-alpaca-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Alpaca server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.fake.closing = True  # release hung requests first, or uvicorn waits for them
        self.fake.clear_faults()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.stop()


# ---- As its own process --------------------------------------------------------------------------


class FakeAlpacaAdmin:
    """The admin HTTP API as Python calls: what `FakeAlpaca`'s methods do, for a fake in another process."""

    def __init__(self, url: str, key: str, secret: str, timeout: float = 10.0) -> None:
        self._client = httpx.Client(
            base_url=url, headers={"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = self._client.request(method, "/_fake/admin/" + path, json=body, params=params or None)
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def refusals(self) -> dict[str, Any]:
        """Every refused trading or data request: {"total", "reasons": [{status, code, message, count}]}."""
        return self._call("GET", "refusals")

    def requests(self) -> dict[str, Any]:
        """Trading requests per key, with the busiest minute: {"limit_per_minute", "accounts"}."""
        return self._call("GET", "requests")

    def reset(self, starting_cash: float | None = None) -> None:
        self._call("POST", "reset", {} if starting_cash is None else {"starting_cash": starting_cash})

    def set_price(self, symbol: str, price: float | Decimal) -> None:
        self._call("POST", "prices", {symbol: float(price)})

    def tick(self, count: int = 1) -> None:
        self._call("POST", "tick", {"count": count})

    def set_fill_policy(self, policy: FillPolicy) -> None:
        self._call("POST", "fill-policy", policy.to_dict())

    def fill_order(
        self, order_id: str, qty: float | None = None, price: float | None = None
    ) -> dict[str, Any]:
        return self._call("POST", f"orders/{order_id}/fill", {"qty": qty, "price": price})

    def set_clock(self, at: datetime | None, ticking: bool = True) -> dict[str, Any]:
        """The fake's time (None: the wall clock), frozen there unless `ticking`."""
        return self._call("POST", "clock", {"at": None if at is None else at.isoformat(), "ticking": ticking})

    def relax_rules(self, relaxed: Iterable[Rule]) -> None:
        """Enforce every one of Alpaca's rules but these."""
        self._call("POST", "rules", {"relaxed": [str(rule) for rule in relaxed]})

    def inject_fault(
        self,
        api: str = "all",
        kind: str = "error",
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
    ) -> list[dict[str, Any]]:
        body = {"api": api, "kind": kind, "status": status, "seconds": seconds, "count": count}
        return self._call("POST", "faults", body)

    def clear_faults(self, api: str | None = None) -> None:
        self._call("DELETE", "faults", **({"api": api} if api else {}))


class FakeAlpacaSubprocess(_Endpoints):
    """The fake as `python -m orch.fake_alpaca` in its own process; steer it through `.admin`.

    Keyword arguments are `FakeAlpacaConfig` fields (those the command line takes). The process
    uses the default (simulated) price sources.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config_fields: Any) -> None:
        unknown = set(config_fields) - {f.name for f in fields(FakeAlpacaConfig)}
        if unknown:
            raise TypeError(f"unknown FakeAlpacaConfig fields: {sorted(unknown)}")
        if config_fields.get("record_responses"):
            raise ValueError("recorded responses stay in the server's process: use FakeAlpacaServer")
        self.config = FakeAlpacaConfig(**({"tick_interval_seconds": None} | config_fields))
        self.host, self.port = host, port
        self.key, self.secret = self.config.key, self.config.secret
        self._process: subprocess.Popen[str] | None = None
        self.admin: FakeAlpacaAdmin | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        config = self.config
        command = [sys.executable, "-m", "orch.fake_alpaca", "--host", self.host, "--port", str(self.port)]
        command += ["--exit-with-parent"]  # never outlive the test that started it
        command += ["--key", config.key, "--seed", str(config.seed), "--cash", str(config.starting_cash)]
        command += ["--fill-policy", _policy_argument(config.fill_policy)]
        command += ["--tick-interval", str(config.tick_interval_seconds or 0)]
        command += [
            "--ticks-per-bar",
            str(config.ticks_per_bar),
            "--tick-volatility",
            str(config.tick_volatility),
        ]
        command += ["--bars-page-size", str(config.bars_page_size)]
        for rule in sorted(config.relaxed_rules):
            command += ["--relax", str(rule)]
        if config.clock_start is not None:
            command += ["--clock-start", config.clock_start.isoformat()]
        if config.clock_frozen:
            command += ["--clock-frozen"]
        command += ["--rate-limit", str(config.rate_limit_per_minute)]
        command += ["--crypto-taker-fee", str(config.crypto_taker_fee)]
        command += ["--crypto-maker-fee", str(config.crypto_maker_fee)]
        command += ["--crypto-min-notional", str(config.crypto_min_notional)]
        for symbol in sorted(config.non_fractionable_symbols):
            command += ["--non-fractionable", symbol]
        command += ["--margin-multiplier", str(config.margin_multiplier)]
        command += ["--cancel-delay", str(config.cancel_delay_seconds)]
        if not config.shorting_enabled:
            command += ["--no-shorting"]
        return command

    def start(self) -> Self:
        # The secret goes through the environment, not argv, where `ps` would show it.
        environment = {**os.environ, "FAKE_ALPACA_SECRET": self.config.secret}
        self._process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, text=True, env=environment)
        assert self._process.stdout is not None
        first_line = _read_line(self._process.stdout, STARTUP_TIMEOUT_SECONDS)
        if not first_line.startswith("FAKE_ALPACA_URL="):
            self.stop()
            raise RuntimeError(f"the fake Alpaca process did not start: {first_line!r}")
        self.port = int(first_line.strip().rsplit(":", 1)[1])
        self.admin = FakeAlpacaAdmin(self.url, self.key, self.secret)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/_fake/health", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError("the fake Alpaca process did not become healthy")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.stop()


def _policy_argument(policy: FillPolicy) -> str:
    """The --fill-policy value: immediate, manual, delayed:SECONDS or partial:N:INTERVAL[:FIRST]."""
    if policy.mode == "delayed":
        return f"delayed:{policy.first_delay_seconds}"
    if policy.mode == "partial":
        return f"partial:{policy.pieces}:{policy.interval_seconds}:{policy.first_delay_seconds}"
    return policy.mode


def parse_policy_argument(text: str) -> FillPolicy:
    mode, *numbers = text.split(":")
    if mode == "delayed" and len(numbers) == 1:
        return FillPolicy.delayed(float(numbers[0]))
    if mode == "partial" and len(numbers) in (2, 3):
        return FillPolicy.partial(int(numbers[0]), *(float(n) for n in numbers[1:]))
    if mode in ("immediate", "manual") and not numbers:
        return FillPolicy(mode)
    raise ValueError(f"invalid fill policy {text!r}: immediate, manual, delayed:S or partial:N:S[:FIRST]")


def _read_line(stream: Any, timeout: float) -> str:
    """One line from a child's stdout, or "" if none comes in time (a thread, since pipes don't time out)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""
