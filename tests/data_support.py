"""Bars on disk and a recording HTTP endpoint for the data-source and resource-pool tests (no tests here)."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.fake_alpaca.server import bind_socket, uvicorn_config
from orch.market.base import MarketDataSource


def write_csv_folder(
    folder: Path,
    market: MarketDataSource,
    symbols: Sequence[str],
    bars: int,
    end: datetime | None = None,
    *,
    scale: float = 1.0,
) -> Path:
    """`market`'s last `bars` bars of each symbol as `<folder>/<SYMBOL>.csv`, prices times `scale`.

    Crypto pairs are left out: the csv source names a symbol after its file, and "BTC/USD" is no file name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in (s for s in symbols if "/" not in s):
        history = market.history(symbol, bars, end)
        with (folder / f"{symbol}.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
            for i, stamp in enumerate(history.timestamps.astype("datetime64[s]")):
                writer.writerow(
                    [
                        f"{np.datetime_as_string(stamp)}Z",
                        *(
                            repr(float(c[i]) * scale)
                            for c in (history.open, history.high, history.low, history.close)
                        ),
                        repr(float(history.volume[i])),
                    ]
                )
    return folder


class RecordingApi:
    """A tiny HTTP API on a free port that records when each request arrived (time.monotonic): the
    API's own view of how many requests it got in any window."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self._lock = threading.Lock()

        async def hit(request: Request) -> JSONResponse:
            with self._lock:
                self.arrivals.append((time.monotonic(), request.url.path))
            # Also a valid (empty) answer to alpaca-py's bars requests, so it can be hammered too.
            return JSONResponse({"bars": {}, "next_page_token": None, "path": request.url.path})

        self.app = Starlette(routes=[Route("/{name:path}", hit)])
        self.url = ""

    def times(self, prefix: str = "/") -> list[float]:
        with self._lock:
            return sorted(t for t, path in self.arrivals if path.startswith(prefix))

    def count(self, prefix: str = "/") -> int:
        return len(self.times(prefix))


@contextmanager
def recording_api() -> Iterator[RecordingApi]:
    api = RecordingApi()
    sock = bind_socket()
    api.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn_config(api.app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield api
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def most_in_any_window(times: Sequence[float], window: float) -> int:
    """The largest number of `times` inside any half-open window [t, t + window)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
