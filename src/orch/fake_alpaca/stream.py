"""The market-data websocket, speaking the protocol alpaca-py's `StockDataStream` and `CryptoDataStream` use.

The conversation (Alpaca's real-time market data protocol): the server greets with
`[{"T": "success", "msg": "connected"}]`; the client sends `{"action": "auth", "key", "secret"}` and
gets `authenticated` (or error 402 and a closed socket); then `{"action": "subscribe", "trades": [...],
"quotes": [...], "bars": [...]}` (or `unsubscribe`) is answered with the full subscription, and data
flows as arrays of messages: trades `{"T": "t"}`, quotes `{"T": "q"}`, minute bars `{"T": "b"}`.

Framing follows the client's handshake, as Alpaca does: a client that sends `Content-Type:
application/msgpack` (alpaca-py always does) gets binary msgpack frames with timestamps as msgpack
Timestamps; any other client gets JSON text frames with RFC-3339 timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack
from starlette.websockets import WebSocket, WebSocketDisconnect

from orch.fake_alpaca.prices import BarRow, LiveTick
from orch.market.base import is_crypto

if TYPE_CHECKING:
    from orch.fake_alpaca.core import FakeAlpaca

log = logging.getLogger(__name__)

# Channels a subscription reply lists, per kind of stream (what the real server answers).
STOCK_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
CRYPTO_CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")
DATA_CHANNELS = {"t": "trades", "q": "quotes", "b": "bars"}
AUTH_TIMEOUT_SECONDS = 10.0
OUTBOX_LIMIT = 10_000  # batches; past it a client is too slow and is dropped (Alpaca: error 407)
STREAM_IEX_PATH = "/v2/iex"
CRYPTO_STREAM_PATH = "/v1beta3/crypto/us"


# ---- Messages ------------------------------------------------------------------------------------


def trade_message(tick: LiveTick) -> dict[str, Any]:
    if is_crypto(tick.symbol):
        return {"T": "t", "S": tick.symbol, "p": float(tick.price), "s": float(tick.size) / 1000,
                "t": tick.timestamp, "i": tick.trade_id, "tks": "B"}  # fmt: skip
    return {"T": "t", "S": tick.symbol, "i": tick.trade_id, "x": "V", "p": float(tick.price), "s": tick.size,
            "c": ["@"], "z": "C", "t": tick.timestamp}  # fmt: skip


def quote_message(tick: LiveTick) -> dict[str, Any]:
    if is_crypto(tick.symbol):
        return {"T": "q", "S": tick.symbol, "bp": float(tick.bid), "bs": 1.0, "ap": float(tick.ask),
                "as": 1.0, "t": tick.timestamp}  # fmt: skip
    return {"T": "q", "S": tick.symbol, "bx": "V", "bp": float(tick.bid), "bs": 1, "ax": "V",
            "ap": float(tick.ask), "as": 1, "c": ["R"], "z": "C", "t": tick.timestamp}  # fmt: skip


def bar_message(symbol: str, bar: BarRow) -> dict[str, Any]:
    volume: float = bar.volume if is_crypto(symbol) else int(bar.volume)
    return {"T": "b", "S": symbol, "o": bar.open, "h": bar.high, "l": bar.low, "c": bar.close,
            "v": volume, "t": bar.timestamp, "n": bar.trade_count, "vw": bar.vwap}  # fmt: skip


def _encode(messages: list[dict[str, Any]], binary: bool) -> bytes | str:
    if binary:
        return msgpack.packb([_for_msgpack(m) for m in messages], datetime=False, default=_msgpack_default)
    return json.dumps(messages, default=_json_default)


def _for_msgpack(message: dict[str, Any]) -> dict[str, Any]:
    return {
        k: msgpack.Timestamp.from_datetime(v) if isinstance(v, datetime) else v for k, v in message.items()
    }


def _msgpack_default(value: Any) -> Any:
    raise TypeError(f"cannot encode {type(value).__name__} for the stream")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot encode {type(value).__name__} for the stream")


def _decode(frame: dict[str, Any]) -> Any:
    if frame.get("bytes") is not None:
        return msgpack.unpackb(frame["bytes"])
    return json.loads(frame.get("text") or "null")


# ---- Bars built from ticks -----------------------------------------------------------------------


class BarBuilder:
    """Rolls the live ticks of each symbol into the bars the stream publishes every N ticks."""

    def __init__(self) -> None:
        self._open: dict[str, list[LiveTick]] = {}

    def add(self, tick: LiveTick) -> None:
        self._open.setdefault(tick.symbol, []).append(tick)

    def flush(self) -> list[tuple[str, BarRow]]:
        bars = []
        for symbol, ticks in self._open.items():
            prices = [float(t.price) for t in ticks]
            volume = float(sum(t.size for t in ticks))
            vwap = sum(float(t.price) * t.size for t in ticks) / volume if volume else prices[-1]
            start = ticks[0].timestamp.replace(second=0, microsecond=0)
            bars.append((symbol, BarRow(start, prices[0], max(prices), min(prices), prices[-1], volume,
                                        len(ticks), vwap)))  # fmt: skip
        self._open.clear()
        return bars


# ---- Connections ---------------------------------------------------------------------------------


@dataclass(eq=False)
class StreamClient:
    websocket: WebSocket
    crypto: bool
    binary: bool
    outbox: asyncio.Queue[list[dict[str, Any]]]
    subscriptions: dict[str, set[str]] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        return CRYPTO_CHANNELS if self.crypto else STOCK_CHANNELS

    def wants(self, message: dict[str, Any]) -> bool:
        symbols = self.subscriptions.get(DATA_CHANNELS.get(message["T"], ""), ())
        return message["S"] in symbols or "*" in symbols

    def subscription_message(self) -> dict[str, Any]:
        reply: dict[str, Any] = {"T": "subscription"}
        for channel in self.channels:
            reply[channel] = sorted(self.subscriptions.get(channel, ()))
        if not self.crypto:
            # Corrections and cancel errors come with trades.
            reply["corrections"] = reply["trades"]
            reply["cancelErrors"] = reply["trades"]
        return reply


class StreamHub:
    """Every open stream connection, and the fan-out of published messages to their outboxes."""

    def __init__(self) -> None:
        self._clients: set[StreamClient] = set()
        self._lock = threading.Lock()  # publish() runs on the ticker and on test threads
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop

    def clients(self) -> list[StreamClient]:
        with self._lock:
            return list(self._clients)

    def add(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.add(client)

    def remove(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def subscribed_symbols(self, universe: Callable[[], list[str]]) -> set[str]:
        """Symbols some client subscribed to ("*" stands for every symbol of its kind)."""
        wanted: set[str] = set()
        for client in self.clients():
            for channel in DATA_CHANNELS.values():
                symbols = client.subscriptions.get(channel, set())
                if "*" in symbols:
                    wanted |= {s for s in universe() if is_crypto(s) == client.crypto}
                wanted |= symbols - {"*"}
        return wanted

    def publish(self, messages: list[dict[str, Any]]) -> None:
        if not messages or self._loop is None:
            return
        for client in self.clients():
            batch = [m for m in messages if is_crypto(m["S"]) == client.crypto and client.wants(m)]
            if batch:
                self._deliver(client, batch)

    def send_control(self, client: StreamClient, messages: list[dict[str, Any]]) -> None:
        self._deliver(client, messages)

    def disconnect_all(self) -> None:
        for client in self.clients():
            self._deliver(client, [])  # an empty batch tells the writer to close

    def _deliver(self, client: StreamClient, batch: list[dict[str, Any]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _put(client, batch)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to tell
                loop.call_soon_threadsafe(_put, client, batch)


def _put(client: StreamClient, batch: list[dict[str, Any]]) -> None:
    if client.outbox.qsize() >= OUTBOX_LIMIT:
        return  # the writer will notice the backlog and drop the client
    client.outbox.put_nowait(batch)


async def stream_endpoint(websocket: WebSocket) -> None:
    fake: FakeAlpaca = websocket.app.state.fake
    if fake.stream_refuses_connection():
        await websocket.close(code=1013)  # before accept: the handshake fails with HTTP 403
        return
    crypto = websocket.url.path.startswith("/v1beta3/crypto")
    binary = websocket.headers.get("content-type", "").startswith("application/msgpack")
    client = StreamClient(websocket, crypto, binary, asyncio.Queue())
    await websocket.accept()
    writer = asyncio.create_task(_write(fake, client))
    fake.hub.send_control(client, [{"T": "success", "msg": "connected"}])
    try:
        if await _authenticate(fake, client):
            fake.hub.add(client)
            await _serve_requests(fake, client)
        # Let the writer send what is queued (an auth error, say), then close.
        client.outbox.put_nowait([])
        await asyncio.wait_for(asyncio.shield(writer), timeout=2.0)
    except (WebSocketDisconnect, TimeoutError, asyncio.CancelledError):
        pass
    finally:
        fake.hub.remove(client)
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer


async def _authenticate(fake: FakeAlpaca, client: StreamClient) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUTH_TIMEOUT_SECONDS
    while True:
        try:
            frame = await asyncio.wait_for(client.websocket.receive(), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            fake.hub.send_control(client, [{"T": "error", "code": 404, "msg": "auth timeout"}])
            return False
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        request = _decode_or_none(frame)
        if not isinstance(request, dict) or request.get("action") != "auth":
            fake.hub.send_control(client, [{"T": "error", "code": 401, "msg": "not authenticated"}])
            continue
        key_ok = hmac.compare_digest(str(request.get("key", "")), fake.config.key)
        secret_ok = hmac.compare_digest(str(request.get("secret", "")), fake.config.secret)
        if key_ok and secret_ok:
            fake.hub.send_control(client, [{"T": "success", "msg": "authenticated"}])
            return True
        fake.hub.send_control(client, [{"T": "error", "code": 402, "msg": "auth failed"}])
        return False


async def _serve_requests(fake: FakeAlpaca, client: StreamClient) -> None:
    while True:
        frame = await client.websocket.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        request = _decode_or_none(frame)
        action = request.get("action") if isinstance(request, dict) else None
        if not isinstance(request, dict) or action not in ("subscribe", "unsubscribe"):
            fake.hub.send_control(client, [{"T": "error", "code": 400, "msg": "invalid syntax"}])
            continue
        for channel in client.channels:
            symbols = request.get(channel) or []
            if not isinstance(symbols, list):
                continue
            current = client.subscriptions.setdefault(channel, set())
            if action == "subscribe":
                current.update(str(s) for s in symbols)
            else:
                current.difference_update(str(s) for s in symbols)
        fake.hub.send_control(client, [client.subscription_message()])
        fake.stream_subscriptions_changed()


async def _write(fake: FakeAlpaca, client: StreamClient) -> None:
    """The only sender on the socket, so control replies and data never interleave mid-frame."""
    while True:
        batch = await client.outbox.get()
        if client.outbox.qsize() >= OUTBOX_LIMIT - 1:
            batch = [{"T": "error", "code": 407, "msg": "slow client"}]
            await _send(client, batch)
            batch = []
        if not batch:
            await client.websocket.close(code=1000)
            return
        if fake.stream_muted() and batch[0]["T"] not in ("success", "error"):
            continue  # a muted server says nothing, but a test may still need to connect
        await _send(client, batch)


async def _send(client: StreamClient, batch: list[dict[str, Any]]) -> None:
    payload = _encode(batch, client.binary)
    if isinstance(payload, bytes):
        await client.websocket.send_bytes(payload)
    else:
        await client.websocket.send_text(payload)


def _decode_or_none(frame: dict[str, Any]) -> Any:
    try:
        return _decode(frame)
    except Exception:
        return None
