"""A local fake of Alpaca's Trading API, Market Data API and market-data stream, for tests and demos.

alpaca-py works against it unchanged: point `TradingClient`, `StockHistoricalDataClient`,
`CryptoHistoricalDataClient` and `StockDataStream` at it with `url_override`. Prices come from the
project's seeded simulated market; orders fill on a configurable schedule; faults (hangs, errors,
latency, dropped streams) can be injected through `/_fake/admin/...` or the Python API.

- `FakeAlpacaServer`: in a background thread, with direct access to the state (`.fake`).
- `FakeAlpacaSubprocess`: in its own process, steered over HTTP (`.admin`).
- `python -m orch.fake_alpaca --port 0 --key K --secret S`: from a shell.
"""

from orch.fake_alpaca.broker import FillPolicy
from orch.fake_alpaca.core import FakeAlpaca, FakeAlpacaConfig
from orch.fake_alpaca.server import FakeAlpacaAdmin, FakeAlpacaServer, FakeAlpacaSubprocess

__all__ = [
    "FakeAlpaca",
    "FakeAlpacaAdmin",
    "FakeAlpacaConfig",
    "FakeAlpacaServer",
    "FakeAlpacaSubprocess",
    "FillPolicy",
]
