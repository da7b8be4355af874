"""`python -m orch.fake_alpaca`: run the fake Alpaca server until interrupted.

    python -m orch.fake_alpaca --port 0 --key K --secret S

The first line on stdout is `FAKE_ALPACA_URL=http://127.0.0.1:<port>` (port 0 picks a free one);
point alpaca-py's `url_override` at it, and `StockDataStream` at `ws://127.0.0.1:<port>/v2/iex`.
The secret may come from the environment (FAKE_ALPACA_SECRET) instead of the command line, where
other users of the machine could read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from datetime import datetime
from decimal import Decimal

import uvicorn

from orch.fake_alpaca.app import build_app
from orch.fake_alpaca.core import FakeAlpaca, FakeAlpacaConfig
from orch.fake_alpaca.rules import Rule
from orch.fake_alpaca.server import bind_socket, parse_policy_argument, uvicorn_config
from orch.fake_alpaca.stream import CRYPTO_STREAM_PATH, STREAM_IEX_PATH

PARENT_CHECK_SECONDS = 0.5
DEFAULTS = FakeAlpacaConfig()


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orch.fake_alpaca", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--key", default="fake-key")
    parser.add_argument("--secret", default=os.environ.get("FAKE_ALPACA_SECRET", "fake-secret"))
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated prices")
    parser.add_argument("--cash", type=float, default=100_000.0, help="starting cash of the account")
    parser.add_argument(
        "--fill-policy",
        default="immediate",
        type=parse_policy_argument,
        help="immediate | manual | delayed:SECONDS | partial:PIECES:INTERVAL[:FIRST_DELAY]",
    )
    parser.add_argument(
        "--tick-interval", type=float, default=1.0, help="seconds between live price steps; 0 for none"
    )
    parser.add_argument("--ticks-per-bar", type=int, default=60, help="ticks rolled into each streamed bar")
    parser.add_argument(
        "--tick-volatility", type=float, default=0.0005, help="standard deviation of one tick's log return"
    )
    parser.add_argument("--bars-page-size", type=int, default=10_000, help="the most bars one page holds")
    parser.add_argument(
        "--relax",
        action="append",
        default=[],
        type=Rule,
        metavar="RULE",
        help=f"stop enforcing one of Alpaca's rules (repeatable): {', '.join(rule.value for rule in Rule)}",
    )
    parser.add_argument(
        "--clock-start",
        type=_aware_time,
        help="the fake's time starts here (ISO 8601 with a zone) and ticks on; default: the wall clock",
    )
    parser.add_argument("--clock-frozen", action="store_true", help="the fake's time stays at --clock-start")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULTS.rate_limit_per_minute,
        help="trading requests a minute per account",
    )
    parser.add_argument("--crypto-taker-fee", type=Decimal, default=DEFAULTS.crypto_taker_fee)
    parser.add_argument("--crypto-maker-fee", type=Decimal, default=DEFAULTS.crypto_maker_fee)
    parser.add_argument(
        "--crypto-min-notional", type=Decimal, default=DEFAULTS.crypto_min_notional, help="USD, crypto buys"
    )
    parser.add_argument(
        "--non-fractionable",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="an equity sold in whole shares",
    )
    parser.add_argument(
        "--margin-multiplier",
        type=int,
        choices=(1, 2, 4),
        default=DEFAULTS.margin_multiplier,
        help="1: a cash account; 2, 4: margin",
    )
    parser.add_argument(
        "--cancel-delay",
        type=float,
        default=DEFAULTS.cancel_delay_seconds,
        help="seconds an order stays pending_cancel (and may fill)",
    )
    parser.add_argument("--no-shorting", action="store_true", help="refuse sells beyond the position")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one exits"
    )
    return parser.parse_args(argv)


def _aware_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (Z or +hh:mm)")
    return moment


def config_from(arguments: argparse.Namespace) -> FakeAlpacaConfig:
    if arguments.clock_frozen and arguments.clock_start is None:
        raise SystemExit("--clock-frozen needs --clock-start")
    return FakeAlpacaConfig(
        key=arguments.key,
        secret=arguments.secret,
        seed=arguments.seed,
        starting_cash=arguments.cash,
        fill_policy=arguments.fill_policy,
        relaxed_rules=frozenset(arguments.relax),
        clock_start=arguments.clock_start,
        clock_frozen=arguments.clock_frozen,
        rate_limit_per_minute=arguments.rate_limit,
        crypto_taker_fee=arguments.crypto_taker_fee,
        crypto_maker_fee=arguments.crypto_maker_fee,
        crypto_min_notional=arguments.crypto_min_notional,
        non_fractionable_symbols=frozenset(arguments.non_fractionable),
        margin_multiplier=arguments.margin_multiplier,
        cancel_delay_seconds=arguments.cancel_delay,
        tick_interval_seconds=arguments.tick_interval or None,
        ticks_per_bar=arguments.ticks_per_bar,
        tick_volatility=arguments.tick_volatility,
        bars_page_size=arguments.bars_page_size,
        shorting_enabled=not arguments.no_shorting,
    )


async def _exit_with_parent(server: uvicorn.Server) -> None:
    parent = os.getppid()
    while not server.should_exit:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            server.should_exit = True


async def serve(arguments: argparse.Namespace) -> None:
    fake = FakeAlpaca(config_from(arguments))
    sock = bind_socket(arguments.host, arguments.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(build_app(fake)))
    print(f"FAKE_ALPACA_URL=http://{host}:{port}", flush=True)
    print(
        f"fake Alpaca: trading and data http://{host}:{port}, stock stream ws://{host}:{port}{STREAM_IEX_PATH},"
        f" crypto stream ws://{host}:{port}{CRYPTO_STREAM_PATH}, admin http://{host}:{port}/_fake/admin/state",
        file=sys.stderr,
        flush=True,
    )
    watcher = asyncio.create_task(_exit_with_parent(server)) if arguments.exit_with_parent else None
    try:
        await server.serve(sockets=[sock])
    finally:
        fake.closing = True
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(parse_arguments(argv)))


if __name__ == "__main__":
    main()
