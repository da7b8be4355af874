"""Benchmark of the `orch hft` hot path, beside a bare Python loop doing the same arithmetic.

    .venv/bin/python bench/hft_hot_path.py [--ticks 300000] [--kill-samples 200]

1. The hot path: simulated quote/trade ticks into `Engine.on_tick` (market maker and arbitrage on
   two crypto symbols), through the risk gate, the journal write (SQLite WAL file, or memory) and
   into the simulated venue, with the venue's per-batch flush and the cancel tasks included in
   the ticks-per-second figure. Tick-to-order latency runs from the tick's intake stamp to the
   order accepted by the venue, for every tick that produced an order.
2. The baseline: the same ticks through a plain loop doing the strategy and limit arithmetic on
   floats and dicts, no objects, journal or venue: what Python itself costs on this machine.
3. Kill latency: a real `orch hft` subprocess with ticks flowing; POST /kill (halt) until the
   answer says HALTED, then POST /resume, repeated, over loopback with a kept-alive connection.

Timings depend on the machine; the script measures, it never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.hft.config import HftSettings
from orch.hft.engine import Engine
from orch.hft.journal import Journal
from orch.hft.ticks import QUOTE, SimulatedTickSource

SYMBOLS = ["BTC/USD", "ETH/USD"]
BATCH = 256
LIMITS = {
    "max_order_notional": 1e9,
    "max_position_notional": 1e12,
    "max_gross_exposure": 1e12,
    "max_position_quantity": 1e9,
    "max_orders_per_interval": 10**9,
    "max_daily_loss": 1e12,
}


def percentiles(samples_ns: list[int] | np.ndarray) -> tuple[float, float, float]:
    if not len(samples_ns):
        return (float("nan"),) * 3
    p50, p99, p999 = np.percentile(np.asarray(samples_ns), [50, 99, 99.9]) / 1_000
    return float(p50), float(p99), float(p999)


# ---- 1. The hot path -----------------------------------------------------------------------------


async def hot_path(ticks: list, storage: str, workdir: Path) -> dict[str, float]:
    settings = HftSettings(
        symbols=SYMBOLS,
        mm_symbols=SYMBOLS,
        mm_inventory_limit=1e6,  # the default cadences: requote after 1 ms and a 2 bp move
        risk=LIMITS,
    )
    journal_path = ":memory:" if storage == "memory" else workdir / f"bench-{storage}-journal.sqlite"
    venue_path = ":memory:" if storage == "memory" else str(workdir / f"bench-{storage}-venue.sqlite")
    engine = Engine(
        settings,
        SimulatedBroker(venue_path, SimulatedVenueConfig(latency_seconds=0.0005)),
        Journal(journal_path, autocheckpoint=False),
    )
    engine.gate.reconciled = True
    engine.gate.resume("benchmark")
    gc.collect()
    gc.freeze()  # as the process does after start-up
    gc.set_threshold(50_000, 20, 100)
    perf_ns = time.perf_counter_ns
    on_tick = engine.on_tick
    started = time.perf_counter()
    next_checkpoint = started + 1.0
    for start in range(0, len(ticks), BATCH):
        for tick in ticks[start : start + BATCH]:
            tick.received_ns = perf_ns()
            on_tick(tick)
        engine.end_of_batch()
        if time.perf_counter() >= next_checkpoint:  # the process checkpoints the journal once a second
            engine.journal.checkpoint()
            next_checkpoint += 1.0
        await asyncio.sleep(0)  # cancels and other loop work run here, inside the measured time
    elapsed = time.perf_counter() - started
    await engine.drain()
    figures = engine.latency.figures()
    return {
        "ticks_per_second": len(ticks) / elapsed,
        "orders": engine.gate.approvals,
        "p50": figures.p50_us or float("nan"),
        "p99": figures.p99_us or float("nan"),
        "p999": figures.p999_us or float("nan"),
    }


# ---- 2. The bare Python baseline -----------------------------------------------------------------


def baseline(ticks: list) -> dict[str, float]:
    """The same decisions on plain floats: marks, requote test, skewed quotes, arbitrage edge, limits."""
    marks: dict[str, float] = {}
    last_quote: dict[str, float] = {}
    books: dict[tuple[str, int], tuple[float, float]] = {}
    inventory: dict[str, float] = {}
    latencies: list[int] = []
    orders = 0
    perf_ns = time.perf_counter_ns
    started = time.perf_counter()
    for tick in ticks:
        received = perf_ns()
        symbol = tick.symbol
        if tick.venue == 0:
            marks[symbol] = tick.price
        if tick.kind != QUOTE:
            continue
        books[(symbol, tick.venue)] = (tick.bid, tick.ask)
        emitted = False
        if tick.venue == 0:
            mid = tick.price
            last = last_quote.get(symbol)
            if last is None or abs(mid - last) >= mid * 1e-4:
                last_quote[symbol] = mid
                position = inventory.get(symbol, 0.0)
                reservation = mid * (1 - position / 10_000)
                bid, ask = reservation * 0.9995, reservation * 1.0005
                if abs(position + 1) * bid <= 1e12 and bid * 1 <= 1e9:
                    orders += 1
                    emitted = True
                if abs(position - 1) * ask <= 1e12 and ask * 1 <= 1e9:
                    orders += 1
                    emitted = True
        here, there = books.get((symbol, 0)), books.get((symbol, 1))
        if (
            here is not None
            and there is not None
            and (there[0] > here[1] * 1.0003 or here[0] > there[1] * 1.0003)
        ):
            orders += 1
            emitted = True
        if emitted:
            latencies.append(perf_ns() - received)
    elapsed = time.perf_counter() - started
    p50, p99, p999 = percentiles(latencies)
    return {"ticks_per_second": len(ticks) / elapsed, "orders": orders, "p50": p50, "p99": p99, "p999": p999}


# ---- 3. Kill latency -----------------------------------------------------------------------------


def kill_latency(samples: int, tick_rate: float, workdir: Path) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "bench-token"
    env = {
        **os.environ,
        "ORCH_HFT_ACCOUNT": "bench",
        "ORCH_HFT_DATA_DIR": str(workdir / "kill"),
        "ORCH_HFT_PORT": str(port),
        "ORCH_HFT_TOKEN": token,
        "ORCH_HFT_SYMBOLS": '["BTC/USD", "ETH/USD"]',
        "ORCH_HFT_MM_SYMBOLS": '["BTC/USD", "ETH/USD"]',
        "ORCH_HFT_TICK_RATE": str(tick_rate),
        **{f"ORCH_HFT_RISK__{k.upper()}": str(v) for k, v in LIMITS.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orch.workers.hft"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = {"Authorization": f"Bearer {token}"}
    raw_durations: list[int] = []
    httpx_durations: list[int] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/state").json()["state"] == "active":
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the hft process did not become active")
                time.sleep(0.05)
            time.sleep(0.5)  # ticks flowing at full rate
            with RawHttp(port, token) as raw:
                for _ in range(samples):
                    started = time.perf_counter_ns()
                    answer = raw.post("/kill", {"level": "halt", "reason": "benchmark"})
                    raw_durations.append(time.perf_counter_ns() - started)
                    assert answer["state"] == "halted", answer
                    raw.post("/resume", {"reason": "benchmark"})
                    time.sleep(0.005)
            for _ in range(samples // 2):
                started = time.perf_counter_ns()
                answer = client.post("/kill", json={"level": "halt", "reason": "benchmark"}).json()
                httpx_durations.append(time.perf_counter_ns() - started)
                assert answer["state"] == "halted", answer
                client.post("/resume", json={"reason": "benchmark"})
                time.sleep(0.005)
            ticks_per_second = client.get("/status").json()["ticks_per_second"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    p50, p99, _ = percentiles(raw_durations)
    httpx_p50, httpx_p99, _ = percentiles(httpx_durations)
    return {
        "p50": p50,
        "p99": p99,
        "max": max(raw_durations) / 1_000,
        "httpx_p50": httpx_p50,
        "httpx_p99": httpx_p99,
        "ticks_per_second": ticks_per_second,
    }


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client on one socket: measures the server, not a client library."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def __enter__(self) -> RawHttp:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def post(self, path: str, body: dict) -> dict:
        payload = json.dumps(body).encode()
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += self.sock.recv(65536)
        return json.loads(rest[:length])


# ---- Report --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--kill-samples", type=int, default=200)
    parser.add_argument("--kill-tick-rate", type=float, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    arguments = parser.parse_args()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    source = SimulatedTickSource(SYMBOLS, seed=arguments.seed, rate=1, dislocation_bps=2.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="orch-hft-bench-") as directory:
        workdir = Path(directory)
        rows.append(("bare Python loop (baseline)", baseline(source.generate(arguments.ticks))))
        for storage in ("file", "memory"):
            ticks = SimulatedTickSource(SYMBOLS, seed=arguments.seed, rate=1, dislocation_bps=2.0).generate(
                arguments.ticks
            )
            label = (
                "hot path, journal+venue on disk (WAL)"
                if storage == "file"
                else "hot path, journal+venue in memory"
            )
            rows.append((label, asyncio.run(hot_path(ticks, storage, workdir))))
        kill = kill_latency(arguments.kill_samples, arguments.kill_tick_rate, workdir)

    print(f"\nticks: {arguments.ticks:,}  python {sys.version.split()[0]}  cpus {os.cpu_count()}")
    print(f"{'':40} {'ticks/s':>12} {'orders':>8} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9}")
    for label, r in rows:
        print(
            f"{label:40} {r['ticks_per_second']:>12,.0f} {r['orders']:>8,} "
            f"{r['p50']:>8.1f} {r['p99']:>8.1f} {r['p999']:>9.1f}"
        )
    print(
        f"\nkill -> HALTED over loopback ({arguments.kill_samples} requests, process ticking at "
        f"{kill['ticks_per_second']:,.0f}/s): p50 {kill['p50'] / 1000:.2f} ms"
        f"  p99 {kill['p99'] / 1000:.2f} ms  max {kill['max'] / 1000:.2f} ms (raw HTTP/1.1 socket);"
        f" through httpx: p50 {kill['httpx_p50'] / 1000:.2f} ms  p99 {kill['httpx_p99'] / 1000:.2f} ms"
    )
    print("targets: >= 200,000 ticks/s; tick-to-order p99 < 50 us; kill p99 < 5 ms")


if __name__ == "__main__":
    main()
